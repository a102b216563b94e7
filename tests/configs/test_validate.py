"""Config names: Nacos's `ParamUtils.isValid`, with its ASCII fast path."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from naraft.configs.validate import is_valid_name


def letters_digits_or_extras(value: str) -> bool:
    """The rule walked character by character (Unicode letters and digits, `_-.:`)."""
    return all(ch.isalnum() or ch in "_-.:" for ch in value)


@given(st.text(max_size=40) | st.text(st.characters(max_codepoint=127), max_size=40))
@example("")
@example("a-b_c.d:e")
@example("a b")
@example("a/b")
@example("a\n")
@example("café.yaml")
def test_a_name_is_valid_exactly_when_every_character_is_allowed(value: str) -> None:
    assert is_valid_name(value) == letters_digits_or_extras(value)


@pytest.mark.parametrize("value", ["DEFAULT_GROUP", "com.example.app-prod.yaml", "配置"])
def test_names_clients_use_are_valid(value: str) -> None:
    assert is_valid_name(value)

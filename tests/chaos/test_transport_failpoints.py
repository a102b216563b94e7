"""Transport failpoint specs (NARAFT_FAILPOINTS / the debug route) parse or are refused."""

from __future__ import annotations

import pytest

from naraft.transport.client import LinkFaults, parse_link_faults


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("", LinkFaults(), id="empty"),
        pytest.param("storage.powerloss=1", LinkFaults(), id="other-modules-ignored"),
        pytest.param(
            "peer.loss=0.1;peer.duplicate=0.03;peer.delay_ms=150;peer.reorder=0.1;peer.seed=7",
            LinkFaults(loss=0.1, duplicate=0.03, delay_ms=150, reorder=0.1, seed=7),
            id="everything",
        ),
        pytest.param(
            " peer.loss = 1 ; peer.to=a:1|b:2 ",
            LinkFaults(loss=1.0, recipients=frozenset({"a:1", "b:2"})),
            id="spaces-and-recipients",
        ),
    ],
)
def test_failpoint_specs_parse(spec: str, expected: LinkFaults) -> None:
    assert parse_link_faults(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("peer.lose=0.1", "unknown", id="misspelt"),
        pytest.param("peer.loss", "no value", id="no-value"),
        pytest.param("peer.loss=lots", "could not convert", id="not-a-number"),
        pytest.param("peer.loss=1.5", "0..1", id="not-a-probability"),
        pytest.param("peer.delay_ms=-1", "0..60000", id="negative-delay"),
    ],
)
def test_bad_failpoint_specs_are_refused_with_the_name(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_link_faults(spec)


def test_faults_apply_only_to_the_named_recipients() -> None:
    faults = parse_link_faults("peer.loss=0.5;peer.to=a:1")
    assert faults.applies_to("a:1")
    assert not faults.applies_to("b:2")
    assert not LinkFaults(recipients=frozenset({"a:1"})).applies_to("a:1")  # nothing active

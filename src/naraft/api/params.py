"""Typed readers for request parameters: the query string, then a urlencoded form body.

Real clients send everything in the query string (docs/nacos-compat.md#requests); a form
body is read as well, as Nacos's servlet `getParameter` does. `+` decodes to a space in both.
This is the one place where wire camelCase meets the domain's snake_case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web
from multidict import MultiDict, MultiMapping

from naraft.naming.model import ClientAgent
from naraft.naming.validate import RawInstance, RawService

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"

_WIRE_EXCEPTIONS: Final[Mapping[str, str]] = {"client_ip": "clientIP"}


def wire_name(field: str) -> str:
    """snake_case field → the camelCase parameter clients send (`service_name` → `serviceName`)."""
    if (special := _WIRE_EXCEPTIONS.get(field)) is not None:
        return special
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


class Params:
    """Request parameters; a name given twice answers with its first value (query first)."""

    def __init__(self, values: MultiMapping[str]) -> None:
        self._values = values

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def first(self, *names: str) -> str | None:
        """The first of `names` present with a non-blank value (Nacos alias fallback)."""
        for name in names:
            value = self._values.get(name)
            if value is not None and value.strip():
                return value
        return next((v for n in names if (v := self._values.get(n)) is not None), None)


async def read_params(request: web.Request) -> Params:
    """The query string plus, for a urlencoded body, the form fields after it."""
    if request.content_type != FORM_CONTENT_TYPE or not request.body_exists:
        return Params(request.query)
    merged: MultiDict[str] = MultiDict(request.query)
    form = await request.post()
    for name, value in form.items():
        if isinstance(value, str):
            merged.add(name, value)
    return Params(merged)


def client_agent(request: web.Request) -> ClientAgent:
    agent = request.headers.get("User-Agent") or request.headers.get("Client-Version") or ""
    return ClientAgent(agent)


def raw_instance(params: Params) -> RawInstance:
    return RawInstance(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        cluster_name=params.first("clusterName", "cluster"),
        ip=params.get("ip"),
        port=params.get("port"),
        weight=params.get("weight"),
        enabled=params.first("enabled", "enable"),
        healthy=params.get("healthy"),
        ephemeral=params.get("ephemeral"),
        metadata=params.get("metadata"),
    )


def raw_service(params: Params) -> RawService:
    return RawService(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        protect_threshold=params.get("protectThreshold"),
        metadata=params.get("metadata"),
        selector=params.get("selector"),
    )


def is_true(value: str | None) -> bool:
    """A lenient flag for optional behaviour switches (`true` in any case)."""
    return value is not None and value.strip().lower() == "true"

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

from naraft.errors import InvalidArgumentError
from naraft.naming.model import ClientAgent
from naraft.naming.validate import RawCluster, RawInstance, RawMetadataBatch, RawService

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
MAX_PARAMS: Final = 256  # query and form together; a Nacos request sends about a dozen
MAX_PARAM_NAME_CHARS: Final = 256
MAX_PARAM_VALUE_CHARS: Final = 512 * 1024  # the body limit is 1 MiB; metadata is the big one

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

    def with_value(self, name: str, value: str) -> Params:
        """These parameters with `name` set to `value` alone."""
        values = MultiDict(self._values)
        values[name] = value
        return Params(values)

    def first(self, *names: str) -> str | None:
        """The first of `names` present with a non-blank value (Nacos alias fallback)."""
        for name in names:
            value = self._values.get(name)
            if value is not None and value.strip():
                return value
        return next((v for n in names if (v := self._values.get(n)) is not None), None)


def check_params(
    values: MultiMapping[str], max_value_chars: int = MAX_PARAM_VALUE_CHARS
) -> MultiMapping[str]:
    """`values`, if within the parameter limits; InvalidArgumentError naming the one that is
    not (the count of parameters, a name's length, a value's length)."""
    if len(values) > MAX_PARAMS:
        raise InvalidArgumentError(
            "parameters",
            f"at most {MAX_PARAMS}",
            message=f"too many parameters: {len(values)}, at most {MAX_PARAMS}",
        )
    for name, value in values.items():
        if len(name) > MAX_PARAM_NAME_CHARS:
            raise InvalidArgumentError(
                "parameters",
                "name too long",
                message=f"a parameter name is longer than "
                f"{MAX_PARAM_NAME_CHARS} characters: {name[:32]}...",
            )
        if len(value) > max_value_chars:
            raise InvalidArgumentError(
                name,
                "too long",
                message=f"invalid parameter {name}: longer than {max_value_chars} characters",
            )
    return values


_PARAMS_KEY: Final = web.RequestKey("naraft.params", MultiDict)
ONLY_BODY_LIMIT: Final = 1 << 62
"""A `max_value_chars` for a reader that leaves the value limit to the handler (the access
middleware: the client body limit still bounds every value)."""


async def read_params(
    request: web.Request, *, max_value_chars: int = MAX_PARAM_VALUE_CHARS
) -> Params:
    """The query string plus, for a urlencoded body, the form fields after it. A value is
    at most `max_value_chars` long (the config routes take a config's content). The body
    is parsed once per request (the access middleware and the handler share it); each call
    checks its own value limit."""
    # The edge's input middleware has counted the parameters (query and form) already.
    merged = request.get(_PARAMS_KEY)
    if not isinstance(merged, MultiDict):
        merged = MultiDict(request.query)
        if request.content_type == FORM_CONTENT_TYPE and request.body_exists:
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, str):
                    merged.add(name, value)
        request[_PARAMS_KEY] = merged
    return Params(check_params(merged, max_value_chars))


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


def raw_metadata_batch(params: Params) -> RawMetadataBatch:
    return RawMetadataBatch(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        consistency_type=params.get("consistencyType"),
        instances=params.get("instances"),
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


def raw_cluster(params: Params) -> RawCluster:
    return RawCluster(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        cluster_name=params.get("clusterName"),
        check_port=params.get("checkPort"),
        use_instance_port=params.get("useInstancePort4Check"),
        health_checker=params.get("healthChecker"),
        metadata=params.get("metadata"),
    )


def is_true(value: str | None) -> bool:
    """A lenient flag for optional behaviour switches (`true` in any case)."""
    return value is not None and value.strip().lower() == "true"

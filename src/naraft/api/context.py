"""What handlers find on the application, and the small response helpers they share."""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from naraft.api.params import Params, is_true
from naraft.naming.service import NamingService

NAMING: Final = web.AppKey("naming", NamingService)


def naming_of(request: web.Request) -> NamingService:
    return request.app[NAMING]


def ok() -> web.Response:
    """Nacos's write answer: 200 text/plain, body exactly `ok`."""
    return web.Response(text="ok")


def json_response(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def maybe_read_barrier(naming: NamingService, params: Params) -> None:
    """`linearizable=true` (a naraft extension) makes a read go through a read barrier;
    otherwise it is local, once the commits this node has heard of are applied."""
    if is_true(params.get("linearizable")):
        await naming.read_barrier()
    else:
        await naming.local_read_point()

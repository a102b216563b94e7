"""Drives nacos-sdk-python 3.x (its `v2.nacos` API, over gRPC) for the e2e tests.

Run by the Python of the sdk3 venv (conftest's `sdk3` fixture), never imported by the
suite. It reads one JSON command per line on stdin and writes one JSON line per answer on
stdout: `{"id": n, "ok": true, "result": ...}` or `{"id": n, "ok": false, "error": "..."}`.
Subscriptions and config listeners write event lines as they fire:
`{"event": "instances", "service": s, "hosts": ["ip:port", ...]}` and
`{"event": "config", "dataId": d, "group": g, "content": c}`.

The first command is `start` (servers, the directory for the SDK's logs and cache,
namespace, optional username and password); then
any of the operations below, by name; `close` shuts the clients down and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from v2.nacos import (
    ClientConfigBuilder,
    ConfigParam,
    DeregisterInstanceParam,
    GRPCConfig,
    ListInstanceParam,
    ListServiceParam,
    NacosConfigService,
    NacosNamingService,
    RegisterInstanceParam,
    SubscribeServiceParam,
)


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class Driver:
    def __init__(self) -> None:
        self.naming: Any = None
        self.config: Any = None

    async def start(
        self,
        servers: str,
        workdir: str,
        namespace: str = "",
        username: str = "",
        password: str = "",
        services: str = "naming,config",
    ) -> str:
        builder = (
            ClientConfigBuilder()
            .server_address(servers)
            .namespace_id(namespace)
            .log_level("WARNING")
            .log_dir(os.path.join(workdir, "log"))
            .cache_dir(os.path.join(workdir, "cache"))
            .grpc_config(GRPCConfig(grpc_timeout=5000))
        )
        if username:
            builder = builder.username(username).password(password)
        client_config = builder.build()
        if "naming" in services:
            self.naming = await NacosNamingService.create_naming_service(client_config)
        if "config" in services:
            self.config = await NacosConfigService.create_config_service(client_config)
        return "started"

    async def register(
        self,
        service: str,
        ip: str,
        port: int,
        group: str = "DEFAULT_GROUP",
        ephemeral: bool = True,
        cluster: str = "",
        weight: float = 1.0,
        metadata: dict[str, str] | None = None,
    ) -> bool:
        return bool(
            await self.naming.register_instance(
                RegisterInstanceParam(
                    service_name=service,
                    group_name=group,
                    ip=ip,
                    port=port,
                    ephemeral=ephemeral,
                    cluster_name=cluster,
                    weight=weight,
                    metadata=metadata or {},
                )
            )
        )

    async def deregister(
        self,
        service: str,
        ip: str,
        port: int,
        group: str = "DEFAULT_GROUP",
        ephemeral: bool = True,
        cluster: str = "",
    ) -> bool:
        return bool(
            await self.naming.deregister_instance(
                DeregisterInstanceParam(
                    service_name=service,
                    group_name=group,
                    ip=ip,
                    port=port,
                    ephemeral=ephemeral,
                    cluster_name=cluster,
                )
            )
        )

    async def list(
        self,
        service: str,
        group: str = "DEFAULT_GROUP",
        healthy_only: bool | None = None,
        subscribe: bool = False,
    ) -> list[dict[str, Any]]:
        hosts = await self.naming.list_instances(
            ListInstanceParam(
                service_name=service,
                group_name=group,
                healthy_only=healthy_only,
                subscribe=subscribe,
            )
        )
        return [
            {
                "ip": h.ip,
                "port": h.port,
                "healthy": h.healthy,
                "weight": h.weight,
                "ephemeral": h.ephemeral,
                "metadata": h.metadata,
            }
            for h in hosts
        ]

    async def services(self, group: str = "DEFAULT_GROUP", namespace: str = "public") -> Any:
        page = await self.naming.list_services(
            ListServiceParam(namespace_id=namespace, group_name=group, page_no=1, page_size=100)
        )
        return {"count": page.count, "services": page.services}

    async def subscribe(self, service: str, group: str = "DEFAULT_GROUP") -> str:
        async def heard(hosts: list[Any]) -> None:
            emit(
                {
                    "event": "instances",
                    "service": service,
                    "hosts": sorted(f"{h.ip}:{h.port}" for h in hosts),
                }
            )

        await self.naming.subscribe(
            SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=heard)
        )
        return "subscribed"

    async def publish(
        self, data_id: str, content: str, group: str = "DEFAULT_GROUP", cas_md5: str = ""
    ) -> bool:
        return bool(
            await self.config.publish_config(
                ConfigParam(data_id=data_id, group=group, content=content, cas_md5=cas_md5)
            )
        )

    async def get(self, data_id: str, group: str = "DEFAULT_GROUP") -> Any:
        return await self.config.get_config(ConfigParam(data_id=data_id, group=group))

    async def remove(self, data_id: str, group: str = "DEFAULT_GROUP") -> bool:
        return bool(await self.config.remove_config(ConfigParam(data_id=data_id, group=group)))

    async def listen(self, data_id: str, group: str = "DEFAULT_GROUP") -> str:
        async def heard(tenant: str, group_: str, data_id_: str, content: str) -> None:
            emit({"event": "config", "dataId": data_id_, "group": group_, "content": content})

        await self.config.add_listener(data_id, group, heard)
        return "listening"

    async def health(self) -> bool:
        return bool(await self.naming.server_health())

    async def close(self) -> str:
        if self.naming is not None:
            await self.naming.shutdown()
        if self.config is not None:
            await self.config.shutdown()
        return "closed"


async def main() -> None:
    driver = Driver()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        number, op, args = command["id"], command["op"], command.get("args", {})
        try:
            result = await getattr(driver, op)(**args)
            emit({"id": number, "ok": True, "result": result})
        except Exception as error:  # reported to the test, which decides
            emit({"id": number, "ok": False, "error": f"{type(error).__name__}: {error}"})
        if op == "close":
            break


if __name__ == "__main__":
    asyncio.run(main())

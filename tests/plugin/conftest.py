"""An in-process daemon (the aiohttp application on a real SQLite database) that the CNI
protocol tests send the plugin's requests to, exactly as plugin/main.go frames them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from shim_harness import cni_environment

from ipamd.api.app import create_app
from tests.support.inprocess import opened_ipam, serving


@dataclass
class Answer:
    """What the plugin would print and exit with."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> Any:
        return json.loads(self.stdout) if self.stdout else None

    def error(self, code: int, version: str = "1.0.0") -> dict[str, Any]:
        assert self.exit_code == 1, self
        error = self.output
        assert set(error) == {"cniVersion", "code", "msg", "details"}, error
        assert (error["code"], error["cniVersion"]) == (code, version), error
        assert error["msg"] and self.stderr.count("\n") == 1, self
        return dict(error)


class Client:
    """Requests to the application over its Unix socket, where no token is asked for."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    def post(self, path: str, **kw: Any) -> Any:
        return self.session.post(f"http://ipamd{path}", **kw)

    def get(self, path: str) -> Any:
        return self.session.get(f"http://ipamd{path}")


class Daemon:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def exec(self, command: str | None, config: Any, *, wire: int = 1, **environment: str | None) -> Answer:
        env = cni_environment(command, **environment)
        text = config if isinstance(config, str) else json.dumps(config)
        reply = await self.client.post("/v1/cni/exec", json={"wire": wire, "env": env, "config": text})
        assert reply.status == 200, await reply.text()
        body = await reply.json()
        assert set(body) == {"exitCode", "stdout", "stderr"}, body
        return Answer(body["exitCode"], body["stdout"], body["stderr"])

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        reply = await self.client.post(path, json=body, **kw)
        return reply.status, await reply.json()

    async def get(self, path: str) -> Any:
        reply = await self.client.get(path)
        assert reply.status == 200, await reply.text()
        return await reply.json()

    async def subnet(self, name: str, cidr: str, **fields: Any) -> None:
        status, body = await self.post(
            "/v1/subnets", {"name": name, "cidrBlock": cidr, "provider": f"{name}.default", **fields}
        )
        assert status == 201, body

    async def held(self, subnet: str) -> list[dict[str, Any]]:
        return list((await self.get(f"/v1/allocations?subnet={subnet}"))["items"])


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with opened_ipam(f"sqlite:///{tmp_path / 'ipamd.db'}", node="n1") as ipam:
        async with serving(create_app(ipam), prefix="ipamd-cni-") as socket:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket))
            try:
                yield Daemon(Client(session))
            finally:
                await session.close()

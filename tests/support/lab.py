"""A deployment running in-process on loopback, driven from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from mcmig.capture.trace import Trace
from mcmig.commands.migrate import token_for
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.nodes.deployment import RunningDeployment, start_deployment
from mcmig.nodes.topology import entry_server
from mcmig.profiles import Deployment, load_deployment
from mcmig.sip.timers import TimerConfig
from mcmig.sip.uri import parse_sip_uri
from mcmig.transport.base import TransportConfig
from tests.support.tools import ROOT

T = TypeVar("T")
PARTNER = "partner.example"


class Lab:
    def __init__(
        self, deployment: Deployment | str, state_dir: Path, client_host: str = "127.0.2.100"
    ) -> None:
        self.deployment = (
            deployment if isinstance(deployment, Deployment) else load_deployment(ROOT / deployment)
        )
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.client_host = client_host
        self.running: RunningDeployment | None = None
        self.client = SipNode("client", client_host, 0)
        self.trace = Trace()
        self.run(self.client.start())
        self.trace.watch(self.client, "client")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def start(
        self,
        only: set[str] | None = None,
        timers: TimerConfig | None = None,
        transport: TransportConfig | None = None,
        **options: Any,
    ) -> None:
        self.running = self.run(
            start_deployment(
                self.deployment, self.state_dir, only, timers, transport=transport, **options
            )
        )
        for node in self.running.nodes:
            self.trace.watch(node, node.name.split("/")[0])

    def stop(self) -> None:
        if self.running is not None:
            self.run(self.running.stop())
            self.running = None

    def close(self) -> None:
        self.stop()
        self.run(self.client.stop())
        self.loop.close()

    def token(self, user: str, partner: str = PARTNER) -> str:
        return token_for(self.deployment, partner, user)

    def migrate(
        self, user: str, token: str | None = None, partner: str = PARTNER
    ) -> MigrationOutcome:
        system = self.deployment.system(partner)
        assert system is not None
        self.trace.clear()
        client = McClient(self.client, user)
        server = entry_server(system, parse_sip_uri(user))
        return self.run(
            client.migrate(
                system.migration_psi, server.listen.address(), token or self.token(user, partner)
            )
        )

    def registry(self, node: str = "primary-server") -> list[Any]:
        assert self.running is not None
        return self.running.servers[node].store.all()


def without_gateways(deployment: Deployment) -> Deployment:
    """The same systems with no gateway: servers talk to each other directly."""
    import dataclasses

    from mcmig.profiles.model import Peer

    servers = {s.domain: s.servers[0].listen for s in deployment.systems}
    systems = tuple(
        dataclasses.replace(
            s, gateways=(), peers=tuple(Peer(p.domain, servers[p.domain]) for p in s.peers)
        )
        for s in deployment.systems
    )
    return dataclasses.replace(deployment, systems=systems)


def demo3_lab(state: Path, gateways: bool = True) -> Lab:
    deployment = load_deployment(ROOT / "sip_profiles/demo3.yaml")
    lab = Lab(
        deployment if gateways else without_gateways(deployment), state, client_host="127.0.1.50"
    )
    lab.start()
    return lab

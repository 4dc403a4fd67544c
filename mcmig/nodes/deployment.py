"""Starting the nodes of a deployment profile in one process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mcmig.mc.tokens import KeySource, TokenVerifier
from mcmig.node.runtime import SipNode
from mcmig.nodes.call_relay import end_calls
from mcmig.nodes.gateway import McGateway
from mcmig.nodes.server import McServer
from mcmig.nodes.ue import UserEquipment
from mcmig.profiles.model import Deployment, HostPort, SystemProfile
from mcmig.registry import Registry, SqliteRegistry
from mcmig.registry.postgresql import PostgresRegistry, RegistrySetupError
from mcmig.sip.timers import TimerConfig
from mcmig.transport.base import TransportConfig, format_hostport
from mcmig.transport.memory import MemoryNetwork
from mcmig.transport.tls import client_context, server_context

if TYPE_CHECKING:
    from mcmig.idms.http import IdmsApp, IdmsServer

# Seconds a stopping deployment waits for the answers to the BYEs of its calls.
HANG_UP_GRACE = 2.0
log = logging.getLogger("mcmig.nodes.deployment")


def registry_path(state_dir: Path, node_name: str) -> Path:
    return state_dir / f"{node_name}.sqlite3"


@dataclass
class RunningDeployment:
    deployment: Deployment
    servers: dict[str, McServer] = field(default_factory=dict)
    gateways: dict[str, McGateway] = field(default_factory=dict)
    clients: dict[str, UserEquipment] = field(default_factory=dict)
    nodes: list[SipNode] = field(default_factory=list)
    idms: dict[str, IdmsServer] = field(default_factory=dict)

    async def stop(self, grace: float = HANG_UP_GRACE) -> None:
        """Hang up every call (BYE on each leg, ``grace`` s at most for the
        answers), then stop the nodes and close the registries."""
        ended = await end_calls(self.nodes, grace)
        if ended:
            log.info("ended %d dialogs with BYE before stopping", ended)
        for node in self.nodes:
            await node.stop()
        for server in self.servers.values():
            await server.close()
        for idms in self.idms.values():
            await idms.stop()


class NodeStartError(OSError):
    """A node could not take its address; the text names the address and the node."""


async def open_registry(system: SystemProfile, path: Path, server: str) -> Registry:
    """The server's registry: its SQLite file, or the system's PostgreSQL database."""
    if system.registry.engine == "sqlite":
        return SqliteRegistry(path)
    assert system.registry.dsn is not None
    try:
        return await PostgresRegistry.open(system.registry.dsn)
    except RegistrySetupError as exc:
        raise NodeStartError(f"{server} registry: {exc}") from None


def published_keys(system: SystemProfile) -> KeySource:
    """The system's IdMS keys as its servers learn them: from its JWKS over HTTPS."""
    # aiohttp and Authlib take about half a second to import on a slow host;
    # commands that run no server or IdMS (migrate, token, ladder...) skip them.
    from mcmig.mc.jwks import JwksKeys, https_client_context

    return JwksKeys(system.idms.issuer, https_client_context(system.idms.tls_ca))


async def start_idms(
    system: SystemProfile,
    deployment: Deployment,
    watch: Callable[[str, IdmsApp], None] | None = None,
) -> IdmsServer:
    from mcmig.idms.http import IdmsServer
    from mcmig.idms.provider import IdentityProvider

    idms = system.idms
    server = IdmsServer(
        IdentityProvider(system, deployment), idms.listen, idms.tls_cert, idms.tls_key
    )
    if watch is not None:
        watch(idms.name, server.app)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise NodeStartError(f"https://{idms.listen} ({idms.name}): {_reason(exc)}") from None
    return server


async def start_node(node: SipNode) -> None:
    try:
        await node.start()
    except OSError as exc:
        label = ", ".join(node.name.split("/"))
        raise NodeStartError(f"{node.address} ({label}): {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


async def start_deployment(
    deployment: Deployment,
    state_dir: Path,
    only: set[str] | None = None,
    timers: TimerConfig | None = None,
    network: MemoryNetwork | None = None,
    transport: TransportConfig | None = None,
    watch: Callable[[SipNode], None] | None = None,
    watch_server: Callable[[str, McServer, Path], None] | None = None,
    watch_idms: Callable[[str, IdmsApp], None] | None = None,
    clock: Callable[[], float] = time.time,
    token_keys: Callable[[SystemProfile], KeySource] = published_keys,
    run_idms: bool = True,
) -> RunningDeployment:
    """Start every node (or those named in ``only``); stop what started if one fails.
    ``watch`` sees each node before it starts (to record all it sends), and
    ``watch_server`` each MC service server with its registry file. ``clock`` is
    the wall clock access tokens are judged by (a replay passes the capture's);
    ``token_keys`` where servers find their IdMS's keys (its JWKS, unless a
    test or a replay gives them); ``run_idms`` False starts no IdMS."""

    def node_at(name: str, address: HostPort) -> SipNode:
        node = SipNode(
            name,
            address.host,
            address.port,
            timers=timers,
            network=network,
            transport_config=transport,
        )
        if watch is not None:
            watch(node)
        return node

    running = RunningDeployment(deployment)
    try:
        for system in deployment.systems:
            if run_idms and (only is None or system.idms.name in only):
                running.idms[system.idms.name] = await start_idms(system, deployment, watch_idms)
        for system in deployment.systems:
            verifier = TokenVerifier(
                system.domain,
                token_keys(system),
                leeway=system.tokens.clock_skew,
                max_lifetime=system.tokens.max_lifetime,
                clock=clock,
            )
            for server in system.servers:
                for name, address in server.nodes():
                    if only is not None and name not in only and server.name not in only:
                        continue
                    node = node_at(name, address)
                    path = registry_path(state_dir, name)
                    registry = await open_registry(system, path, name)
                    running.servers[name] = McServer(
                        node, system, server, registry, verifier, clock
                    )
                    if watch_server is not None:
                        watch_server(name, running.servers[name], path)
                    await start_node(node)
                    running.nodes.append(node)
            for gw in system.gateways:
                if only is not None and gw.name not in only:
                    continue
                internal = node_at(f"{gw.name}/internal", gw.internal)
                external = node_at(f"{gw.name}/external", gw.external)
                running.gateways[gw.name] = McGateway(internal, external, system, gw)
                for node in (internal, external):
                    await start_node(node)
                    running.nodes.append(node)
                if gw.tls is not None:
                    names = {
                        (p.target.host, p.target.port): p.domain
                        for p in system.peers
                        if gw.interfaces(p.domain)
                    }
                    try:
                        await external.enable_tls(
                            gw.tls.port, server_context(gw.tls), client_context(gw.tls), names
                        )
                    except OSError as exc:
                        where = f"{format_hostport(external.host, gw.tls.port)}"
                        raise NodeStartError(f"{where} ({gw.name}, TLS): {_reason(exc)}") from None
        for profile in deployment.clients:
            if only is not None and profile.name not in only:
                continue
            node = node_at(profile.name, profile.listen)
            running.clients[profile.name] = UserEquipment(
                node, profile.user, deployment, profile.password
            )
            await start_node(node)
            running.nodes.append(node)
        for name, ue in running.clients.items():
            target = next(c.migrate_to for c in deployment.clients if c.name == name)
            if target is not None:
                await ue.migrate(target)
    except BaseException:
        await running.stop()
        raise
    return running

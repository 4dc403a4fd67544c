"""SIP over TCP (and TLS): Content-Length framing, connection reuse, caps.

Connections are kept in a registry keyed by the remote transport address, so
that responses and later requests to the same peer reuse them (RFC 3261
18.2.2 and RFC 5923's spirit), whichever side opened them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from typing import cast

from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import ConnectionGate, FailureSink, MessageSink, TransportConfig
from mcmig.transport.tls import certificate_names

log = logging.getLogger("mcmig.transport")


class StreamConnection(asyncio.Protocol):
    def __init__(self, owner: StreamTransport, remote: TransportAddress | None = None) -> None:
        self._owner = owner
        self.remote = remote
        self._framer = StreamFramer(owner.config.limits)
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._secured = False
        # Bytes that arrive before the connection is admitted: asyncio's start_tls
        # can hand over application data that came with the end of the handshake
        # before it returns the secured transport to us.
        self._admitted = False
        self._early: list[bytes] = []

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; both have its methods.
        transport = cast(asyncio.Transport, base)
        peer = transport.get_extra_info("peername")
        if self.remote is None and not self._owner.may_accept(str(peer[0])):
            transport.abort()  # a stranger at a border: no place under the caps, no handshake
            return
        server_ssl = self._owner.server_ssl
        if server_ssl is not None and self.remote is None and not self._secured:
            # Accepted over plain TCP: run the TLS handshake ourselves, so that a
            # refused peer is logged (asyncio drops those failures silently). The
            # connection holds its place under the caps from now on.
            self.remote = TransportAddress(self._owner.name, str(peer[0]), int(peer[1]))
            if not self._owner.admit(self):
                transport.abort()
                return
            transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._secure(transport, server_ssl))
            self._owner.tasks.add(task)
            task.add_done_callback(self._owner.tasks.discard)
            return
        self._transport = transport
        if self.remote is None:
            self.remote = TransportAddress(self._owner.name, str(peer[0]), int(peer[1]))
        if not self._owner.admit(self):
            transport.abort()
            return
        self._admitted = True
        self._touch()
        for data in self._pending:
            transport.write(data)
        self._pending.clear()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    async def _secure(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secured = await loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._owner.config.tls_handshake_timeout,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            reason = (
                getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            )
            log.warning("refused TLS connection from %s: %s", self.remote, reason)
            self._abandon(raw)
            return
        if secured is None:
            self._abandon(raw)
            return
        self._secured = True
        self.connection_made(secured)

    def _abandon(self, raw: asyncio.Transport) -> None:
        """A handshake that failed: the raw transport's protocol is asyncio's TLS
        protocol by now, so our connection_lost is not called; give up the place
        under the caps here."""
        raw.abort()
        self._owner.forget(self)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            self._early.append(data)
            return
        self._framer.feed(data)
        assert self.remote is not None
        while True:
            try:
                message = self._framer.next_message()
            except SipParseError as exc:
                log.warning(
                    "closing %s connection from %s: %s", self._owner.name, self.remote, exc.reason
                )
                self.close()
                return
            if message is None:
                return
            self._touch()
            self._owner.on_message(message, self.remote, False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._owner.forget(self)

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._pending.append(data)
        elif not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def certificate_names(self) -> set[str]:
        if self._transport is None:
            return set()
        return certificate_names(self._transport.get_extra_info("peercert"))

    def _touch(self) -> None:
        """Restart the idle clock: only complete messages count as activity."""
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._owner.config.idle_timeout, self._expire)

    def _expire(self) -> None:
        log.info("closing idle %s connection with %s", self._owner.name, self.remote)
        self.close()


class StreamTransport:
    """A listening TCP or TLS socket plus the connections it owns."""

    def __init__(
        self,
        name: str,
        config: TransportConfig,
        on_message: MessageSink,
        on_failure: FailureSink,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name  # "TCP" or "TLS"
        self.config = config
        self.on_message = on_message
        self._on_failure = on_failure
        self.server_ssl = server_ssl
        self._client_ssl = client_ssl
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.connections: dict[TransportAddress, StreamConnection] = {}
        # TLS: the name a server at (host, port) must prove, i.e. the peer's domain
        self.expected_names: dict[tuple[str, int], str] = {}
        self._per_host: Counter[str] = Counter()
        self.refused = 0
        # At a system's border: the remote addresses whose connections are accepted
        # at all (None: any). Others are closed at accept and never count.
        self.gate: ConnectionGate | None = None
        self.turned_away = 0
        self.local_host: str | None = None  # outgoing connections leave from our own address

    async def listen(self, host: str, port: int) -> None:
        self.local_host = host
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StreamConnection(self), host, port, reuse_address=True
        )

    def may_accept(self, host: str) -> bool:
        if self.gate is None or self.gate(host):
            return True
        self.turned_away += 1
        if self.turned_away % 1000 == 1:
            log.warning(
                "closed %s connection from %s at accept: not a peer (%d so far)",
                self.name,
                host,
                self.turned_away,
            )
        return False

    def admit(self, conn: StreamConnection) -> bool:
        assert conn.remote is not None
        if self.connections.get(conn.remote) is conn:
            return True  # one we opened: registered when the first send asked for it
        host = conn.remote.host
        if (
            len(self.connections) >= self.config.max_connections
            or self._per_host[host] >= self.config.max_connections_per_host
        ):
            self.refused += 1
            log.warning(
                "refusing %s connection from %s: connection cap reached", self.name, conn.remote
            )
            return False
        old = self.connections.get(conn.remote)
        if old is not None and old is not conn:
            old.close()
        self.connections[conn.remote] = conn
        self._per_host[host] += 1
        return True

    def forget(self, conn: StreamConnection) -> None:
        if conn.remote is not None and self.connections.get(conn.remote) is conn:
            del self.connections[conn.remote]
            self._per_host[conn.remote.host] -= 1
            if self._per_host[conn.remote.host] <= 0:
                del self._per_host[conn.remote.host]

    def send(self, data: bytes, destination: TransportAddress) -> None:
        conn = self.connections.get(destination)
        if conn is None:
            conn = StreamConnection(self, destination)
            self.connections[destination] = conn
            self._per_host[destination.host] += 1
            # Kept in self.tasks: the loop holds only weak references to tasks.
            task = asyncio.get_running_loop().create_task(self._connect(conn, destination))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        conn.write(data)

    async def _connect(self, conn: StreamConnection, destination: TransportAddress) -> None:
        loop = asyncio.get_running_loop()
        server_hostname = None
        if self._client_ssl is not None:
            server_hostname = self.expected_names.get((destination.host, destination.port))
            if server_hostname is None:
                log.warning("no TLS peer name configured for %s; not connecting", destination)
                self.forget(conn)
                self._on_failure(destination)
                return
        try:
            await loop.create_connection(
                lambda: conn,
                destination.host,
                destination.port,
                ssl=self._client_ssl,
                server_hostname=server_hostname,
                local_addr=None if self.local_host is None else (self.local_host, 0),
            )
        except (OSError, ssl.SSLError) as exc:
            log.warning("%s connection to %s failed: %s", self.name, destination, exc)
            self.forget(conn)
            self._on_failure(destination)

    def peer_names(self, remote: TransportAddress) -> set[str]:
        """Names the verified certificate of the connection from ``remote`` carries."""
        conn = self.connections.get(remote)
        return set() if conn is None else conn.certificate_names()

    @property
    def local_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

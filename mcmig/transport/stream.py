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

from mcmig.sip.errors import SipParseError
from mcmig.sip.framing import StreamFramer
from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import FailureSink, MessageSink, TransportConfig

log = logging.getLogger("mcmig.transport")


class StreamConnection(asyncio.Protocol):
    def __init__(self, owner: StreamTransport, remote: TransportAddress | None = None) -> None:
        self._owner = owner
        self.remote = remote
        self._framer = StreamFramer(owner.config.limits)
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if self.remote is None:
            self.remote = TransportAddress(self._owner.name, str(peer[0]), int(peer[1]))
        if not self._owner.admit(self):
            transport.abort()
            return
        self._touch()
        for data in self._pending:
            transport.write(data)
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
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
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._server: asyncio.Server | None = None
        self.connections: dict[TransportAddress, StreamConnection] = {}
        self._per_host: Counter[str] = Counter()
        self.refused = 0

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StreamConnection(self), host, port, ssl=self._server_ssl, reuse_address=True
        )

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
            asyncio.get_running_loop().create_task(self._connect(conn, destination))
        conn.write(data)

    async def _connect(self, conn: StreamConnection, destination: TransportAddress) -> None:
        loop = asyncio.get_running_loop()
        server_hostname = None
        if self._client_ssl is not None:
            server_hostname = getattr(self._client_ssl, "mcmig_peer_name", None) or destination.host
        try:
            await loop.create_connection(
                lambda: conn,
                destination.host,
                destination.port,
                ssl=self._client_ssl,
                server_hostname=server_hostname,
            )
        except (OSError, ssl.SSLError) as exc:
            log.warning("%s connection to %s failed: %s", self.name, destination, exc)
            self.forget(conn)
            self._on_failure(destination)

    @property
    def local_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

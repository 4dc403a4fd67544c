"""Recording what nodes send, for ladder diagrams and for tests that ask who answered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress


@dataclass(frozen=True)
class TraceEntry:
    time: float
    node: str
    source: TransportAddress
    destination: TransportAddress
    message: Request | Response
    wire: bytes

    @property
    def label(self) -> str:
        m = self.message
        return m.method if isinstance(m, Request) else f"{m.status} {m.reason}"


@dataclass
class Trace:
    """Every message the watched nodes send, in order (received copies are not repeated)."""

    entries: list[TraceEntry] = field(default_factory=list)
    names: dict[TransportAddress, str] = field(default_factory=dict)

    def watch(self, node: SipNode, name: str | None = None) -> None:
        label = name or node.name
        for transport in ("UDP", "TCP", "TLS"):
            self.names[TransportAddress(transport, node.host, node.port)] = label

        def observe(
            direction: str,
            message: Request | Response,
            src: TransportAddress,
            dst: TransportAddress,
        ) -> None:
            if direction == "sent":
                self.entries.append(
                    TraceEntry(time.monotonic(), label, src, dst, message, message.serialize())
                )

        node.observers.append(observe)

    def name_of(self, address: TransportAddress) -> str:
        exact = self.names.get(address)
        if exact is not None:
            return exact
        return next((n for a, n in self.names.items() if a.host == address.host), str(address))

    def clear(self) -> None:
        self.entries.clear()

    def originator(self, status: int) -> str | None:
        """The node that first sent a response with ``status``: who answered."""
        for entry in self.entries:
            if isinstance(entry.message, Response) and entry.message.status == status:
                return entry.node
        return None

"""Recording a running deployment's traffic into a pcap file."""

from __future__ import annotations

from collections.abc import Iterable

from mcmig.capture.writer import PcapRecorder
from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress


class Recording:
    """Each message once: as sent by one of the deployment's nodes, or as received
    from outside them. Nodes are told apart by host (each has its own address):
    their TCP connections leave from ephemeral ports. ``watch`` a node before it
    starts, so that nothing it sends is missed."""

    def __init__(self, recorder: PcapRecorder, hosts: Iterable[str]) -> None:
        self.recorder = recorder
        self.ours = frozenset(hosts)

    def watch(self, node: SipNode) -> None:
        def observe(
            direction: str,
            message: Request | Response,
            src: TransportAddress,
            dst: TransportAddress,
        ) -> None:
            if direction == "sent" or src.host not in self.ours:
                self.recorder.record(message.serialize(), src, dst)

        node.observers.append(observe)


def record_nodes(nodes: list[SipNode], recorder: PcapRecorder) -> None:
    """Record nodes that are running already (see Recording)."""
    recording = Recording(recorder, (n.host for n in nodes))
    for node in nodes:
        recording.watch(node)

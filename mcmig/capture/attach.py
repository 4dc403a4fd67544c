"""Recording a running deployment's traffic into a pcap file."""

from __future__ import annotations

from mcmig.capture.writer import PcapRecorder
from mcmig.node.runtime import SipNode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress


def record_nodes(nodes: list[SipNode], recorder: PcapRecorder) -> None:
    """Each message once: as sent by one of ``nodes``, or as received from outside them.

    Nodes are told apart by host (each has its own address): their TCP
    connections leave from ephemeral ports.
    """
    ours = {n.host for n in nodes}

    for node in nodes:

        def observe(
            direction: str,
            message: Request | Response,
            src: TransportAddress,
            dst: TransportAddress,
        ) -> None:
            if direction == "sent" or src.host not in ours:
                recorder.record(message.serialize(), src, dst)

        node.observers.append(observe)

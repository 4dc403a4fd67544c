"""``mcmig ladder``: the SIP flow in a capture, as a text or SVG sequence diagram."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mcmig.capture import ladder
from mcmig.capture.ladder_svg import render_svg
from mcmig.capture.reader import CapturedMessage, CaptureError, read_sip
from mcmig.commands.common import load
from mcmig.errors import UsageError
from mcmig.sip.message import Request
from mcmig.sip.peer import TransportAddress
from mcmig.sip.uri import SipUri


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "ladder",
        help="draw the SIP flow of a capture",
        description="Read a pcap or pcapng capture (from mcmig or any SIP software; UDP and "
        "TCP, IPv4 and IPv6, fragments, tunnels and VLANs) and draw its SIP messages as a "
        "ladder, one arrow per message: one lifeline per node when a profile names it, "
        "else one per host (the short-lived ports of a client share their host's). "
        "The filters combine: a message is drawn when it passes all of them.",
    )
    cmd.add_argument("capture", metavar="FILE.pcap")
    cmd.add_argument(
        "--profile", metavar="FILE", help="name lifelines after this deployment's nodes"
    )
    cmd.add_argument("--svg", metavar="OUT.svg", help="also write the ladder as SVG")
    cmd.add_argument("--call-id", metavar="ID", help="only this Call-ID")
    cmd.add_argument(
        "--user",
        metavar="USER",
        help="only messages whose Request-URI, From or To names this user "
        "(alice, or sip:alice@primary.example)",
    )
    cmd.add_argument(
        "--node", metavar="NAME", help="only messages to or from this lifeline (node or host)"
    )
    cmd.add_argument(
        "--method",
        metavar="METHOD",
        help="only requests of this method and the responses to them (by CSeq)",
    )
    cmd.add_argument(
        "--from-time",
        metavar="S",
        type=float,
        help="only messages at least S seconds after the capture's first SIP message",
    )
    cmd.add_argument(
        "--to-time",
        metavar="S",
        type=float,
        help="only messages at most S seconds after the capture's first SIP message",
    )
    cmd.set_defaults(func=run_ladder)


def node_names(profile: str | None) -> dict[tuple[str, int], str]:
    if profile is None:
        return {}
    deployment = load(profile)
    names: dict[tuple[str, int], str] = {}
    for system in deployment.systems:
        for server in system.servers:
            names[(server.listen.host, server.listen.port)] = server.name
        for gw in system.gateways:
            names[(gw.internal.host, gw.internal.port)] = f"{gw.name} (int)"
            names[(gw.external.host, gw.external.port)] = f"{gw.name} (ext)"
            if gw.tls is not None:
                names[(gw.external.host, gw.tls.port)] = f"{gw.name} (ext)"
    for client in deployment.clients:
        names[(client.listen.host, client.listen.port)] = client.name
    return names


def select(
    messages: list[CapturedMessage],
    args: argparse.Namespace,
    name_of: Callable[[TransportAddress], str],
) -> list[CapturedMessage]:
    """The messages that pass every filter given on the command line."""
    start = messages[0].time if messages else 0.0
    user = (args.user or "").lower()
    method = (args.method or "").upper()

    def names_user(m: CapturedMessage) -> bool:
        uris = [m.message.from_.uri, m.message.to.uri]
        if isinstance(m.message, Request):
            uris.append(m.message.uri)
        for uri in uris:
            if isinstance(uri, SipUri) and user in (uri.aor.lower(), (uri.user or "").lower()):
                return True
        return False

    def passes(m: CapturedMessage) -> bool:
        if args.call_id and m.message.call_id != args.call_id:
            return False
        if user and not names_user(m):
            return False
        if args.node and args.node not in (name_of(m.source), name_of(m.destination)):
            return False
        if method and m.message.cseq.method.upper() != method:
            return False
        if args.from_time is not None and m.time - start < args.from_time:
            return False
        return args.to_time is None or m.time - start <= args.to_time

    return [m for m in messages if passes(m)]


def run_ladder(args: argparse.Namespace) -> int:
    try:
        messages = read_sip(Path(args.capture))
    except (CaptureError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not messages:
        print("no SIP messages in the capture")
        return 0
    names = node_names(args.profile)
    by_host = {host: name for (host, _), name in names.items()}

    def name_of(address: TransportAddress) -> str:
        exact = names.get((address.host, address.port))
        if exact is not None:
            return exact
        # Any other port of a host (an ephemeral TCP port, a CLI run's client
        # port): the node's name when that host is one node's, else the host.
        return by_host.get(address.host, address.host)

    messages = select(messages, args, name_of)
    if not messages:
        print("no SIP messages pass the filters")
        return 0
    lifelines: list[str] = []
    for m in messages:
        for address in (m.source, m.destination):
            if name_of(address) not in lifelines:
                lifelines.append(name_of(address))
    print(ladder.render(messages, lifelines, name_of))
    if args.svg:
        Path(args.svg).write_text(render_svg(messages, lifelines, name_of))
        print(f"written {args.svg}")
    return 0

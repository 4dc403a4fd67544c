"""``mcmig ladder``: the SIP flow in a capture, as a text or SVG sequence diagram."""

from __future__ import annotations

import argparse
from pathlib import Path

from mcmig import ladder
from mcmig.capture.reader import CaptureError, read_sip
from mcmig.commands.common import load
from mcmig.errors import UsageError
from mcmig.ladder_svg import render_svg
from mcmig.sip.peer import TransportAddress
from mcmig.transport.base import format_hostport


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "ladder",
        help="draw the SIP flow of a capture",
        description="Read a pcap or pcapng capture (from mcmig or any SIP software; UDP and "
        "TCP, IPv4 and IPv6) and draw its SIP messages as a ladder: one lifeline per address, "
        "named after the node when a profile is given, one arrow per message.",
    )
    cmd.add_argument("capture", metavar="FILE.pcap")
    cmd.add_argument(
        "--profile", metavar="FILE", help="name lifelines after this deployment's nodes"
    )
    cmd.add_argument("--svg", metavar="OUT.svg", help="also write the ladder as SVG")
    cmd.set_defaults(func=run_ladder)


def node_names(profile: str | None) -> dict[tuple[str, int], str]:
    if profile is None:
        return {}
    deployment = load(profile)
    names: dict[tuple[str, int], str] = {}
    for system in deployment.systems:
        for server in system.servers:
            names[(server.listen.host, server.listen.port)] = server.name
        if system.gateway is not None:
            gw = system.gateway
            names[(gw.internal.host, gw.internal.port)] = f"{gw.name} (int)"
            names[(gw.external.host, gw.external.port)] = f"{gw.name} (ext)"
            if gw.tls is not None:
                names[(gw.external.host, gw.tls.port)] = f"{gw.name} (ext)"
    for client in deployment.clients:
        names[(client.listen.host, client.listen.port)] = client.name
    return names


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
        # an ephemeral TCP port: name it by its host when that host is one node's
        return by_host.get(address.host, format_hostport(address.host, address.port))

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

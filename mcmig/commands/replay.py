"""``mcmig replay``: a capture as a regression test for one node."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from mcmig.capture.reader import CaptureError, read_sip
from mcmig.capture.replay import Replayer
from mcmig.commands.common import EXIT_OK, EXIT_SIP_FAILURE, load
from mcmig.errors import UsageError
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles.keys import profile_keys


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "replay",
        help="replay a capture against a fresh node and report differences",
        description="Start NODE of the profile fresh, stand in for its peers at their captured "
        "addresses, send it what it received in the capture, and compare what it sends with what "
        "the capture shows (method/status, Request-URI, From/To URIs, CSeq method, Content-Type, "
        "Warning cause, Max-Forwards, body; XML as XML). Branches, tags, Call-IDs, Content-Length "
        "and allocated temporary identities are ignored. SIP over UDP and TCP (TLS payloads "
        "are encrypted in a capture); calls too (peers' ACK and BYE follow the live dialog). "
        "Exit 0 when none differ, 1 when some do.",
    )
    cmd.add_argument("capture", metavar="FILE.pcap")
    cmd.add_argument("--profile", required=True, metavar="FILE")
    cmd.add_argument("--node", required=True, metavar="NAME")
    cmd.add_argument(
        "--state-dir", metavar="DIR", help="state for the node (default: a fresh temporary one)"
    )
    cmd.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    if args.node not in deployment.node_names():
        raise UsageError(
            f"no node {args.node!r} in the profile (nodes: {', '.join(deployment.node_names())})"
        )
    hosts = deployment.node_hosts({args.node})
    try:
        messages = read_sip(Path(args.capture))
    except (CaptureError, OSError) as exc:
        raise UsageError(str(exc)) from None

    # The node runs on the capture's clock: tokens and timers that were valid when
    # the capture was taken are valid in the replay (no sleeping: the SIP core
    # takes time as a parameter, and the wall clock is passed in).
    captured_start = messages[0].time if messages else time.time()
    replay_start = time.monotonic()

    def capture_clock() -> float:
        return captured_start + (time.monotonic() - replay_start)

    async def main(state: Path) -> Replayer:
        # The node verifies tokens with the keys the profile names for its IdMS,
        # which does not run in a replay.
        running = await start_deployment(
            deployment, state, only={args.node}, clock=capture_clock, token_keys=profile_keys
        )
        replayer = Replayer(hosts)
        try:
            await replayer.run(messages)
        finally:
            await running.stop()
        return replayer

    with tempfile.TemporaryDirectory(prefix="mcmig-replay-") as temporary:
        replayer = asyncio.run(main(Path(args.state_dir or temporary)))
    for difference in replayer.differences:
        print(difference)
    found = len(replayer.differences)
    print(f"{args.node}: {replayer.compared} messages compared, {found} differences")
    return EXIT_OK if not replayer.differences else EXIT_SIP_FAILURE

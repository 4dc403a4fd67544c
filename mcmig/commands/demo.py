"""``mcmig demo``: the two-system demo, every outcome, and a ladder of alice's flow."""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcmig.capture import ladder
from mcmig.capture.trace import Trace
from mcmig.commands.common import EXIT_OK, EXIT_SIP_FAILURE, load
from mcmig.commands.migrate import migrate_once, token_for
from mcmig.errors import UsageError
from mcmig.mc.tokens import IdmsKey, generate_private_key, issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import MigrationOutcome
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles import Deployment

PRIMARY, PARTNER = "primary.example", "partner.example"
CLIENT_ADDRESS = ("127.0.2.100", 5062)  # alice's UE in the partner system


@dataclass(frozen=True)
class Case:
    title: str
    user: str
    expect: tuple[int, str | None]
    forged: bool = False


CASES = [
    Case("alice may migrate", "sip:alice@primary.example", (200, None)),
    Case("bob may migrate nowhere", "sip:bob@primary.example", (403, "migration-not-permitted")),
    Case(
        "carol refused by the partner",
        "sip:carol@primary.example",
        (403, "user-not-permitted-by-partner"),
    ),
    Case("unknown user", "sip:dave@primary.example", (404, "unknown-user")),
    Case(
        "user of an unknown system",
        "sip:zed@elsewhere.example",
        (403, "primary-system-not-permitted"),
    ),
    Case(
        "forged access token", "sip:erin@primary.example", (403, "invalid-credentials"), forged=True
    ),
]


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the two-system demo and show every outcome",
        description="Start the demo deployment, run migrations that succeed and that each check "
        "refuses, print a table of outcomes and a ladder diagram of alice's flow, then stop.",
    )
    demo.add_argument("--profile", default="sip_profiles/demo.yaml", metavar="FILE")
    demo.set_defaults(func=run_demo)


def _profile_steps(arrows: int) -> tuple[list[str] | None, dict[int, str] | None]:
    """PROFILE step numbers for alice's arrows; the checks are steps 2, 6 and 7."""
    if arrows == 8:  # with gateways
        return (
            ["1", "3", "4", "5", "8", "9", "10", "11"],
            {
                0: "(2) partner-server: token, general and specific checks; temporary identity",
                3: "(6) primary-server: user and partner checks  (7) record committed",
            },
        )
    if arrows == 4:  # servers talk directly
        return (
            ["1", "3", "8", "11"],
            {
                0: "(2) partner-server: token, general and specific checks; temporary identity",
                1: "(6) primary-server: user and partner checks  (7) record committed",
            },
        )
    return None, None  # retransmissions or provisionals: plain numbering


def forged_token(deployment: Deployment, user: str) -> str:
    """Signed by a key the partner's IdMS never had, under the partner's real kid."""
    system = deployment.system(PARTNER)
    assert system is not None
    stranger = generate_private_key()
    key = IdmsKey(system.idms.issuer, system.idms.kid, stranger.public_key(), stranger)
    return issue_token(key, system.domain, user)


async def demo(
    deployment: Deployment,
) -> tuple[list[tuple[Case, MigrationOutcome, str | None]], str]:
    results = []
    with tempfile.TemporaryDirectory(prefix="mcmig-demo-") as state:
        running = await start_deployment(deployment, Path(state))
        client = SipNode("client", *CLIENT_ADDRESS)
        trace = Trace()
        alice_flow = ""
        try:
            await client.start()
            trace.watch(client, "client")
            for node in running.nodes:
                trace.watch(node, node.name.split("/")[0])
            for case in CASES:
                trace.clear()
                token = (
                    forged_token(deployment, case.user)
                    if case.forged
                    else token_for(deployment, PARTNER, case.user)
                )
                outcome = await migrate_once(deployment, case.user, PARTNER, token, client)
                status = outcome.status
                results.append((case, outcome, trace.originator(status)))
                if case.user.startswith("sip:alice@"):
                    lifelines = [
                        "client",
                        "partner-server",
                        "partner-gw",
                        "primary-gw",
                        "primary-server",
                    ]
                    present = [name for name in lifelines if name in trace.names.values()]
                    alice_flow = ladder.render(
                        list(trace.entries),
                        present,
                        trace.name_of,
                        *_profile_steps(len(trace.entries)),
                    )
        finally:
            await client.stop()
            await running.stop()
    return results, alice_flow


def run_demo(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    if not args.verbose:
        # The table and the ladder say it all; node logs are for -v.
        logging.getLogger("mcmig.node").setLevel(logging.WARNING)
    for domain in (PRIMARY, PARTNER):
        if deployment.system(domain) is None:
            raise UsageError(f"the demo needs systems {PRIMARY} and {PARTNER}")
    results, flow = asyncio.run(demo(deployment))
    print(f"mcmig demo: deployment {deployment.name} ({args.profile})\n")
    print(f"{'case':<32}{'user':<30}{'outcome':<44}answered by")
    ok = True
    for case, outcome, who in results:
        got = (outcome.status, outcome.cause)
        ok &= got == case.expect
        text = f"{outcome.status} {outcome.cause or outcome.reason}"
        mark = "" if got == case.expect else f"   (expected {case.expect[0]} {case.expect[1]})"
        print(f"{case.title:<32}{case.user:<30}{text:<44}{who or '-'}{mark}")
    print("\nalice's migration, step by step (PROFILE section 2, steps 1 to 11):\n")
    print(flow)
    return EXIT_OK if ok else EXIT_SIP_FAILURE

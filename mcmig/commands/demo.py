"""``mcmig demo``: a deployment's every outcome, who answered it, and a ladder of alice's flow.

Migration cases run on any profile with primary.example and partner.example;
cases for a second partner and for traffic (calls and data, migrated users
originating) run when the profile has the systems and clients they name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcmig.capture import ladder
from mcmig.capture.trace import Trace, TraceEntry
from mcmig.commands.common import EXIT_OK, EXIT_SIP_FAILURE, load
from mcmig.commands.migrate import migrate_once, token_for
from mcmig.errors import UsageError
from mcmig.idms.errors import LoginError
from mcmig.mc.tokens import IdmsKey, generate_private_key, issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.deployment import RunningDeployment, start_deployment
from mcmig.profiles import Deployment
from mcmig.profiles.idms_section import read_credentials
from mcmig.profiles.keys import idms_key
from mcmig.sip.peer import TransportAddress

PRIMARY, PARTNER = "primary.example", "partner.example"
CLIENT_ADDRESS = ("127.0.2.100", 5062)  # alice's UE in the partner system
# The demo users' passwords, beside the profile; the IdMSs hold only their hashes.
CREDENTIALS = Path("keys") / "demo-credentials.yaml"


@dataclass(frozen=True)
class Case:
    title: str
    user: str
    expect: tuple[int, str | None]
    # How the client gets its token: "idms" (logs in and exchanges, TS 33.180),
    # "hand-made" (signed with the IdMS's own key, as a test tool does, to reach
    # the SIP checks behind the IdMS's), or "forged" (a key nobody published).
    token: str = "idms"
    partner: str = PARTNER


@dataclass(frozen=True)
class Traffic:
    """Data or a call from a client of the profile to an MC service ID."""

    title: str
    sender: str  # a client's name in the profile
    target: str  # an MC service ID, or "temporary-id" of what the sender last heard
    kind: str = "data"  # or "call"


CASES = [
    Case("alice may migrate", "sip:alice@primary.example", (200, None)),
    Case("bob may migrate nowhere", "sip:bob@primary.example", (400, "invalid_target")),
    Case(
        "bob, hand-made token",
        "sip:bob@primary.example",
        (403, "migration-not-permitted"),
        "hand-made",
    ),
    Case(
        "carol refused by the partner",
        "sip:carol@primary.example",
        (403, "user-not-permitted-by-partner"),
    ),
    Case("unknown user", "sip:dave@primary.example", (401, "access_denied")),
    Case(
        "unknown user, hand-made token",
        "sip:dave@primary.example",
        (404, "unknown-user"),
        "hand-made",
    ),
    Case(
        "user of an unknown system",
        "sip:zed@elsewhere.example",
        (403, "primary-system-not-permitted"),
        "hand-made",
    ),
    Case("forged access token", "sip:erin@primary.example", (403, "invalid-credentials"), "forged"),
    Case(
        "erin may migrate to partner2",
        "sip:erin@primary.example",
        (200, None),
        partner="partner2.example",
    ),
]

TRAFFIC = [
    Traffic("alice refreshes her stay", "alice-ue", "", "migrate"),
    Traffic("alice, abroad, to home", "alice-ue", "sip:bob@primary.example"),
    Traffic("alice to a partner user", "alice-ue", "sip:dave@partner.example"),
    Traffic("alice to a third system", "alice-ue", "sip:gina@partner2.example"),
    Traffic("alice calls home", "alice-ue", "sip:bob@primary.example", "call"),
    Traffic("alice calls a third system", "alice-ue", "sip:gina@partner2.example", "call"),
    Traffic("home to migrated alice", "bob-ue", "sip:alice@primary.example"),
    Traffic("third system calls alice", "gina-ue", "sip:alice@primary.example", "call"),
    Traffic("reply to her temporary id", "dave-ue", "temporary-id"),
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


# PROFILE step numbers of alice's arrows, by how many there are: gateways on both
# sides, on the primary's side only, on the partner's side only, on neither.
STEPS = {
    8: ["1", "3", "4", "5", "8", "9", "10", "11"],
    6: ["1", "3", "5", "8", "9", "11"],
    4: ["1", "3", "8", "11"],
}


def _profile_steps(
    entries: list[TraceEntry], name_of: Callable[[TransportAddress], str]
) -> tuple[list[str] | None, dict[int, str] | None]:
    """PROFILE step numbers for alice's arrows; the checks are steps 2, 6 and 7."""
    steps = STEPS.get(len(entries))
    if steps is None:
        return None, None  # retransmissions or provisionals: plain numbering
    partner = name_of(entries[0].destination)
    primary_arrow = len(entries) // 2 - 1  # the last request, to the primary server
    primary = name_of(entries[primary_arrow].destination)
    return steps, {
        0: f"(2) {partner}: token, general and specific checks; temporary identity",
        primary_arrow: f"(6) {primary}: user and partner checks  (7) record committed",
    }


def lifelines(entries: list[TraceEntry], name_of: Callable[[TransportAddress], str]) -> list[str]:
    """The nodes of a flow, in the order they first take part."""
    names: dict[str, None] = {}
    for entry in entries:
        names.setdefault(name_of(entry.source))
        names.setdefault(name_of(entry.destination))
    return list(names)


def forged_token(deployment: Deployment, user: str) -> str:
    """Signed by a key the partner's IdMS never had, under the partner's real kid."""
    system = deployment.system(PARTNER)
    assert system is not None
    stranger = generate_private_key()
    kid = idms_key(system).kid
    key = IdmsKey(system.idms.issuer, kid, stranger.public_key(), stranger)
    return issue_token(key, system.domain, user)


async def token_of(
    deployment: Deployment, case: Case, passwords: dict[str, str], steps: list[str]
) -> str:
    if case.token == "forged":
        return forged_token(deployment, case.user)
    if case.token == "hand-made":
        return token_for(deployment, case.partner, case.user)
    from mcmig.idms.login import access_token_for  # aiohttp: only when logging in

    password = passwords.get(case.user, "not-a-demo-user")
    return await access_token_for(deployment, case.user, password, case.partner, steps)


def _https(step: str, names: dict[str, str]) -> str:
    """``client -> primary-idms  POST /token (token-exchange) -> 200``"""
    issuer, _, rest = step.partition(" ")
    return f"  client -> {names.get(issuer, issuer):<14} HTTPS {rest}"


Outcome = tuple[str, str, tuple[int, str | None], tuple[int, str | None], str | None]


async def demo(deployment: Deployment) -> tuple[list[Outcome], str]:
    """Rows of (case, who, expected, got, answered by), and alice's ladder."""
    results: list[Outcome] = []
    names = {s.idms.issuer: s.idms.name for s in deployment.systems}
    credentials = deployment.path.parent / CREDENTIALS
    # without the demo's file every login is refused, and the table says so
    passwords = read_credentials(credentials) if credentials.is_file() else {}
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
                if deployment.system(case.partner) is None:
                    continue
                trace.clear()
                steps: list[str] = []
                try:
                    token = await token_of(deployment, case, passwords, steps)
                except LoginError as exc:
                    who = names.get(exc.issuer, exc.issuer)
                    results.append(
                        (case.title, case.user, case.expect, (exc.status, exc.error), who)
                    )
                    continue
                outcome = await migrate_once(deployment, case.user, case.partner, token, client)
                got = (outcome.status, outcome.cause)
                results.append((case.title, case.user, case.expect, got, trace.originator(got[0])))
                if case.user.startswith("sip:alice@"):
                    entries = list(trace.entries)
                    alice_flow = "\n".join(_https(step, names) for step in steps) + "\n\n"
                    alice_flow += ladder.render(
                        entries,
                        lifelines(entries, trace.name_of),
                        trace.name_of,
                        *_profile_steps(entries, trace.name_of),
                    )
            results += await traffic(running, trace)
        finally:
            await client.stop()
            await running.stop()
    return results, alice_flow


async def traffic(running: RunningDeployment, trace: Trace) -> list[Outcome]:
    """The TRAFFIC cases whose clients the profile has; each should end in 200."""
    clients = running.clients
    if not {t.sender for t in TRAFFIC} <= set(clients):
        return []
    for name in clients:
        trace.watch(clients[name].node, name)
    results: list[Outcome] = []
    for case in TRAFFIC:
        ue = clients[case.sender]
        trace.clear()
        target = case.target
        if target == "temporary-id":
            target = str(ue.inbox[-1].from_.uri) if ue.inbox else "sip:nobody@partner.example"
        if case.kind == "migrate":
            outcome = await ue.migrate(PARTNER)
            got: tuple[int, str | None] = (outcome.status, outcome.cause)
            target = PARTNER
        elif case.kind == "call":
            got = ((await ue.call(target, hold=0.2)).status, None)
        else:
            got = ((await ue.send(target, case.title.encode())).status, None)
        route = f"{_short(ue.user)} -> {_short(target)}"
        results.append((case.title, route, (200, None), got, trace.originator(200)))
    return results


def _short(uri: str) -> str:
    """``bob@primary`` for sip:bob@primary.example; a temporary identity cut short."""
    user, _, host = uri.removeprefix("sip:").rpartition("@")
    user = f"{user[:6]}..." if user.startswith("t-") else user
    return f"{user}@{host.split('.')[0]}" if user else host


def run_demo(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    if not args.verbose:
        # The table and the ladder say it all; node logs are for -v.
        logging.getLogger("mcmig.node").setLevel(logging.WARNING)
        logging.getLogger("mcmig.idms").setLevel(logging.WARNING)
    for domain in (PRIMARY, PARTNER):
        if deployment.system(domain) is None:
            raise UsageError(f"the demo needs systems {PRIMARY} and {PARTNER}")
    results, flow = asyncio.run(demo(deployment))
    print(f"mcmig demo: deployment {deployment.name} ({args.profile})\n")
    print(f"{'case':<30}{'user':<36}{'outcome':<34}answered by")
    ok = True
    for title, user, expect, got, who in results:
        ok &= got == expect
        text = f"{got[0]} {got[1] or ('OK' if got[0] == 200 else '')}".rstrip()
        mark = "" if got == expect else f"   (expected {expect[0]} {expect[1] or ''})"
        print(f"{title:<30}{user:<36}{text:<34}{who or '-'}{mark}")
    print(
        "\nalice's authorization (HTTPS, docs/identity.md) and migration, step by step "
        "(PROFILE section 2, steps 1 to 11):\n"
    )
    print(flow)
    return EXIT_OK if ok else EXIT_SIP_FAILURE

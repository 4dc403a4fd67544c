"""A migration load client, run as its own process by the end-to-end benchmark.

Open loop: request i leaves at start + i/rate whatever the answers do, so a
slow system shows up as latency and failures, not as a lower offered load.
Tokens are issued before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from mcmig.mc.tokens import issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient
from mcmig.profiles import load_deployment
from mcmig.profiles.keys import idms_key


async def run(args: argparse.Namespace) -> dict[str, object]:
    deployment = load_deployment(Path(args.profile))
    partner = deployment.system("partner.example")
    assert partner is not None
    key = idms_key(partner)
    users = [f"sip:u{n:06d}@primary.example" for n in range(args.first, args.first + args.count)]
    tokens = [issue_token(key, partner.domain, u) for u in users]
    node = SipNode("load", args.host, 0)
    await node.start()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    refusers: dict[str, int] = {}

    async def one(user: str, token: str) -> None:
        t0 = loop.time()
        outcome = await McClient(node, user).migrate(
            partner.migration_psi, partner.servers[0].listen.address(), token
        )
        latencies.append((loop.time() - t0) * 1000)
        key = f"{outcome.status} {outcome.cause or ''}".strip()
        statuses[key] = statuses.get(key, 0) + 1
        if not outcome.accepted:
            agent = outcome.agent or "?"
            refusers[agent] = refusers.get(agent, 0) + 1

    cpu_start = time.process_time()
    start = loop.time() + 0.05
    tasks = []
    for i, (user, token) in enumerate(zip(users, tokens, strict=True)):
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(user, token)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    cpu_s = time.process_time() - cpu_start
    await node.stop()
    return {
        "sent": len(users),
        "elapsed_s": elapsed,
        "statuses": statuses,
        "refused_by": refusers,
        "cpu_s": cpu_s,
        "latencies_ms": latencies,
        "retransmissions": node.stats.retransmissions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description="mcmig migration load client (used by mcmig bench e2e)"
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument(
        "--first", type=int, required=True, help="first user number (u000000 + first)"
    )
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

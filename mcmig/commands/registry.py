"""``mcmig registry show``: the migration records a primary server holds."""

from __future__ import annotations

import argparse
import json
import time

from mcmig.commands.common import load, state_dir_of
from mcmig.errors import UsageError
from mcmig.nodes.deployment import registry_path
from mcmig.registry import SqliteMigrationStore


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser(
        "registry", help="inspect migration registries", description="Inspect registries."
    )
    registry_sub = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    show = registry_sub.add_parser(
        "show",
        help="list the users a server records as migrated",
        description="List the migration records of a server node (works while the node runs).",
    )
    show.add_argument("--profile", required=True, metavar="FILE")
    show.add_argument("--node", required=True, metavar="NAME", help="a server node of the profile")
    show.add_argument(
        "--state-dir", metavar="DIR", help="as given to mcmig up (default state/<deployment>)"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    if deployment.find_server(args.node) is None:
        raise UsageError(f"no server node {args.node!r} in {args.profile}")
    path = registry_path(state_dir_of(args, deployment), args.node)
    if not path.exists():
        raise UsageError(f"no registry at {path}: has {args.node} run with this --state-dir?")
    store = SqliteMigrationStore(path)
    try:
        records = store.all()
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.as_json() for r in records], indent=2))
        return 0
    if not records:
        print("no migrated users")
    for r in records:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.since))
        print(
            f"{r.mc_service_id}  in {r.partner_system} at {r.partner_address}"
            f"  as {r.temporary_id}  since {since}"
        )
    return 0

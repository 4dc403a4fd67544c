"""``mcmig registry show``: the migration records a primary server holds."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from mcmig.commands.common import load, state_dir_of
from mcmig.errors import UsageError
from mcmig.nodes.deployment import registry_path
from mcmig.registry import MigrationRecord, SqliteMigrationStore
from mcmig.registry.postgresql import PostgresRegistry, RegistrySetupError


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser(
        "registry", help="inspect migration registries", description="Inspect registries."
    )
    registry_sub = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    show = registry_sub.add_parser(
        "show",
        help="list the users a server records as migrated",
        description="List the migration records of a server node (works while the node runs). "
        "With the PostgreSQL engine, the records of the node's whole system, which its "
        "servers share.",
    )
    show.add_argument("--profile", required=True, metavar="FILE")
    show.add_argument("--node", required=True, metavar="NAME", help="a server node of the profile")
    show.add_argument(
        "--state-dir", metavar="DIR", help="as given to mcmig up (default state/<deployment>)"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)


def _file_records(path: Path, node: str) -> list[MigrationRecord]:
    if not path.exists():
        raise UsageError(f"no registry at {path}: has {node} run with this --state-dir?")
    store = SqliteMigrationStore(path)
    try:
        return store.all()
    finally:
        store.close()


async def _shared_records(dsn: str) -> list[MigrationRecord]:
    """The system's database, which every server of the system shares."""
    try:
        registry = await PostgresRegistry.open(dsn, max_size=1)
    except RegistrySetupError as exc:
        raise UsageError(str(exc)) from None
    try:
        return await registry.records()
    finally:
        await registry.close()


def run_show(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    found = deployment.find_server(args.node)
    if found is None:
        raise UsageError(f"no server node {args.node!r} in {args.profile}")
    system = found[0]
    if system.registry.dsn is not None:
        records = asyncio.run(_shared_records(system.registry.dsn))
    else:
        records = _file_records(registry_path(state_dir_of(args, deployment), args.node), args.node)
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

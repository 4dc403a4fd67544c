"""``mcmig migrate``: act as an MC service client and ask a partner for authorization."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from mcmig.commands.common import EXIT_OK, EXIT_SIP_FAILURE, listen_address, load
from mcmig.errors import UsageError
from mcmig.idms.errors import LoginError
from mcmig.mc.body import BodyError, service_id_uri
from mcmig.mc.tokens import issue_token
from mcmig.node.runtime import SipNode
from mcmig.nodes.client import McClient, MigrationOutcome
from mcmig.nodes.topology import entry_server
from mcmig.profiles import Deployment
from mcmig.profiles.idms_section import password_in
from mcmig.profiles.keys import idms_key
from mcmig.sip.uri import parse_sip_uri


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser(
        "migrate",
        help="ask a partner system to authorize a user's migration",
        description="Act as the user's MC service client: log in at the user's home IdMS, "
        "exchange the token there for the partner's IdMS and get the partner's access token "
        "(TS 33.180 inter-domain authorization, over HTTPS), send the migration request to the "
        "partner server, print the outcome. The password comes from --credentials or the "
        "environment variable MCMIG_PASSWORD. Exit 0 on 200, 1 on a SIP failure or a refusal "
        "by an IdMS, 2 on a usage or profile error.",
    )
    migrate.add_argument("--profile", required=True, metavar="FILE")
    migrate.add_argument(
        "--user", required=True, metavar="URI", help="MC service ID, e.g. sip:alice@primary.example"
    )
    migrate.add_argument("--partner", required=True, metavar="DOMAIN", help="the partner MC system")
    migrate.add_argument(
        "--credentials",
        metavar="FILE",
        help="YAML file of MC service ID: password (e.g. sip_profiles/keys/demo-credentials.yaml)",
    )
    migrate.add_argument(
        "--token", metavar="JWT", help="present this access token instead of logging in"
    )
    migrate.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="client address (default 127.0.0.1, any port)",
    )
    migrate.set_defaults(func=run_migrate)


def token_for(deployment: Deployment, partner: str, user: str) -> str:
    """A hand-made token, signed with the partner IdMS's key (tests and benchmarks)."""
    system = deployment.system(partner)
    if system is None:
        raise UsageError(f"no system {partner} in the profile")
    return issue_token(idms_key(system), system.domain, user)


def password_of(user: str, credentials: str | None) -> str:
    if credentials is not None:
        try:
            return password_in(Path(credentials), user)
        except ValueError as exc:
            raise UsageError(f"--credentials: {exc}") from None
    password = os.environ.get("MCMIG_PASSWORD")
    if password is None:
        raise UsageError("no password: give --credentials, MCMIG_PASSWORD or --token")
    return password


async def migrate_once(
    deployment: Deployment, user: str, partner: str, token: str, node: SipNode
) -> MigrationOutcome:
    system = deployment.system(partner)
    if system is None:
        raise UsageError(f"no system {partner} in the profile")
    server = entry_server(system, parse_sip_uri(user))
    return await McClient(node, user).migrate(system.migration_psi, server.listen.address(), token)


def run_migrate(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    try:
        service_id_uri(args.user, "--user")
    except BodyError as exc:
        raise UsageError(exc.reason) from None
    if deployment.system(args.partner) is None:
        raise UsageError(f"no system {args.partner} in the profile")
    host, port = listen_address(args.listen)
    password = None if args.token else password_of(args.user, args.credentials)

    async def main() -> MigrationOutcome | LoginError:
        token = args.token
        if token is None:
            assert password is not None
            from mcmig.idms.login import access_token_for  # aiohttp: only when logging in

            steps: list[str] = []
            try:
                token = await access_token_for(deployment, args.user, password, args.partner, steps)
            except LoginError as exc:
                return exc
            finally:
                for step in steps if args.verbose else []:
                    print(f"  HTTPS {step}", file=sys.stderr)
        node = SipNode("client", host, port)
        if not args.verbose:
            # The outcome line says what went wrong (an unreachable partner, a
            # timeout); the node's own warnings would say it a second time.
            node.log.setLevel(logging.ERROR)
        await node.start()
        try:
            return await migrate_once(deployment, args.user, args.partner, token, node)
        finally:
            await node.stop()

    outcome = asyncio.run(main())
    print(outcome)
    return (
        EXIT_OK if isinstance(outcome, MigrationOutcome) and outcome.accepted else EXIT_SIP_FAILURE
    )

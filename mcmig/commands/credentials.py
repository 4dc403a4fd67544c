"""``mcmig keys generate`` and ``mcmig token issue``: IdMS keys and access tokens."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mcmig.commands.common import load
from mcmig.errors import UsageError
from mcmig.mc.body import BodyError, service_id_uri
from mcmig.mc.tokens import generate_private_key, issue_token, private_key_pem, public_key_pem
from mcmig.profiles.keys import idms_key


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys", help="make IdMS signing keys", description="Make IdMS signing keys."
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser(
        "generate",
        help="write a new P-256 key pair for an IdMS",
        description="Write a new P-256 private key (PEM, mode 0600) "
        "and its public key beside it (.pub).",
    )
    gen.add_argument("--out", required=True, metavar="FILE", help="private key file to write")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=run_keys_generate)

    token = sub.add_parser("token", help="issue access tokens", description="Issue access tokens.")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_sub.add_parser(
        "issue",
        help="print an access token signed by a system's IdMS key",
        description="Print an ES256 access token (JWT) signed with the IdMS key of SYSTEM as named "
        "in the profile; its audience is SYSTEM. "
        "A negative --ttl gives an expired token (for tests).",
    )
    issue.add_argument("--profile", required=True, metavar="FILE")
    issue.add_argument(
        "--system", required=True, metavar="DOMAIN", help="the partner system that will verify it"
    )
    issue.add_argument("--sub", required=True, metavar="URI", help="the user's MC service ID")
    issue.add_argument("--temporary-id", metavar="URI", help="a temporary identity to allocate")
    issue.add_argument(
        "--ttl", type=int, default=3600, metavar="SECONDS", help="validity (default 3600)"
    )
    issue.set_defaults(func=run_token_issue)


def run_keys_generate(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(public_key_pem(key.public_key()))
    print(f"wrote {path} and {pub}")
    return 0


def run_token_issue(args: argparse.Namespace) -> int:
    deployment = load(args.profile)
    system = deployment.system(args.system)
    if system is None:
        raise UsageError(f"no system {args.system} in {args.profile}")
    try:
        service_id_uri(args.sub)
        if args.temporary_id:
            service_id_uri(args.temporary_id, "--temporary-id")
    except BodyError as exc:
        raise UsageError(exc.reason) from None
    key = idms_key(system)
    if key.private_key is None:
        raise UsageError(f"{system.idms.key_file} holds no private key")
    print(issue_token(key, system.domain, args.sub, temporary_id=args.temporary_id, ttl=args.ttl))
    return 0

"""``mcmig keys generate``, ``mcmig idms hash-password`` and ``mcmig token issue``:
IdMS keys, account passwords and hand-made access tokens."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from mcmig.commands.common import load
from mcmig.errors import UsageError
from mcmig.idms.accounts import hash_password
from mcmig.idms.signing import load_signing_keys
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

    idms = sub.add_parser(
        "idms", help="IdMS accounts", description="Tools for a system's IdMS accounts."
    )
    idms_sub = idms.add_subparsers(dest="idms_command", metavar="ACTION", required=True)
    hashing = idms_sub.add_parser(
        "hash-password",
        help="print the Argon2id hash of a password, for idms.accounts",
        description="Read a password (asked twice on a terminal, else the first line of "
        "standard input) and print its Argon2id hash (a PHC string), to put beside the user's "
        "name in the file that a system's idms.accounts names.",
    )
    hashing.set_defaults(func=run_hash_password)

    token = sub.add_parser("token", help="issue access tokens", description="Issue access tokens.")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_sub.add_parser(
        "issue",
        help="print a hand-made access token (a test tool)",
        description="Print an ES256 access token (JWT) as the IdMS of SYSTEM would issue it, "
        "signed with the private key --key (by default the first signing key the profile names "
        "for that IdMS), under that key's RFC 7638 thumbprint as kid; its audience is SYSTEM "
        "unless --audience. A test tool for forged, expired or misdirected tokens: clients log in "
        "at the IdMS instead (mcmig migrate --credentials). "
        "A negative --ttl gives an expired token.",
    )
    issue.add_argument("--profile", required=True, metavar="FILE")
    issue.add_argument(
        "--system", required=True, metavar="DOMAIN", help="the partner system that will verify it"
    )
    issue.add_argument("--key", metavar="PEM", help="sign with this P-256 private key")
    issue.add_argument("--audience", metavar="AUD", help="aud claim (default: SYSTEM)")
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
    if args.key:
        try:
            key = load_signing_keys(system.idms.issuer, (Path(args.key),))[0].key
        except (OSError, ValueError) as exc:
            raise UsageError(f"--key: {exc}") from None
    else:
        key = idms_key(system)
    audience = args.audience or system.domain
    print(issue_token(key, audience, args.sub, temporary_id=args.temporary_id, ttl=args.ttl))
    return 0


def run_hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("an empty password")
    print(hash_password(password))
    return 0

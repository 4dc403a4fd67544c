"""The ``idms`` section of a system: its OpenID Connect provider."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mcmig.profiles.model import IdmsProfile
from mcmig.profiles.node import ProfileNode


def _file(node: ProfileNode, base: Path, key: str, value: str) -> Path:
    path = (base / value).resolve()
    if not path.is_file():
        node.fail(f"no such file {path}", key)
    return path


def _issuer(node: ProfileNode) -> str:
    """An https origin with an IP address and a port: the issuer identifier is
    also where the IdMS listens and where verifiers find its keys."""
    issuer = node.get("issuer", str)
    parts = urlsplit(issuer)
    try:
        host_ok = parts.hostname is not None and bool(ipaddress.ip_address(parts.hostname))
        port = parts.port
    except ValueError:
        host_ok, port = False, None
    if parts.scheme != "https" or not host_ok or port is None or parts.path or parts.query:
        node.fail(f"{issuer!r} is not https://<IP address>:<port>", "issuer")
    return issuer


def _accounts(node: ProfileNode, base: Path) -> dict[Any, Any]:
    """The password hashes: a mapping here, or the name of a YAML file of one."""
    raw = node.data.get("accounts", {})
    if isinstance(raw, str):
        path = _file(node, base, "accounts", raw)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            node.fail(f"{path}: {exc}", "accounts")
    if not isinstance(raw, dict):
        node.fail("expected a mapping of user names to hashes, or a file of one", "accounts")
    return dict(raw)


def idms_profile(node: ProfileNode, base: Path, domain: str) -> IdmsProfile:
    node.only("name", "issuer", "keys", "tls", "accounts", "token_lifetime")
    issuer = _issuer(node)
    keys = tuple(_file(node, base, f"keys[{i}]", k) for i, k in enumerate(node.strings("keys")))
    if not keys:
        node.fail("at least one signing key (the first signs)", "keys")
    tls = node.child("tls")
    tls.only("cert", "key", "ca")
    accounts: dict[str, str] = {}
    for name, value in _accounts(node, base).items():
        if (
            not isinstance(name, str)
            or not isinstance(value, str)
            or not value.startswith("$argon2")
        ):
            node.fail(f"{name!r}: expected a user name and an Argon2 hash", "accounts")
        accounts[name] = value
    lifetime = node.get("token_lifetime", float, 3600.0)
    if not 0 < lifetime <= 86400:
        node.fail("must be more than 0 and at most 86400 seconds", "token_lifetime")
    return IdmsProfile(
        issuer=issuer,
        key_files=keys,
        tls_cert=_file(tls, base, "cert", tls.get("cert", str)),
        tls_key=_file(tls, base, "key", tls.get("key", str)),
        tls_ca=_file(tls, base, "ca", tls.get("ca", str)),
        name=node.get("name", str, f"{domain.split('.')[0]}-idms"),
        accounts=accounts,
        token_lifetime=lifetime,
    )


def read_credentials(path: Path) -> dict[str, str]:
    """A credentials file: YAML, MC service ID -> password (mode 0600 outside a lab)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a mapping of MC service IDs to passwords")
    return data


def password_in(path: Path, user: str) -> str:
    """``user``'s password in the credentials file ``path``; ValueError says why not."""
    try:
        passwords = read_credentials(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(str(exc)) from None
    if user not in passwords:
        raise ValueError(f"{path} has no password for {user}")
    return passwords[user]


def credential(node: ProfileNode, base: Path, user: str) -> str:
    path = _file(node, base, "credentials", node.get("credentials", str))
    try:
        return password_in(path, user)
    except ValueError as exc:  # UnicodeDecodeError included
        node.fail(str(exc), "credentials")

"""The IdMS over HTTPS on loopback: each grant, PKCE refusals, the exchange policy,
the partner's trust in primaries, key rotation, an unreachable JWKS, and
migrations end to end with IdMS-issued tokens (docs/identity.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest

from mcmig.commands.migrate import migrate_once, token_for
from mcmig.idms.accounts import check_password
from mcmig.idms.errors import LoginError
from mcmig.idms.http import IdmsServer
from mcmig.idms.login import IdmsClient, access_token_for, pkce_pair
from mcmig.idms.provider import IdentityProvider
from mcmig.idms.throttle import LoginThrottle
from mcmig.idms.vocabulary import CLIENT_ID, REDIRECT_URI
from mcmig.mc.jwks import JwksKeys, https_client_context
from mcmig.mc.policy import VisitorPolicy
from mcmig.mc.tokens import (
    TokenError,
    TokenVerifier,
    generate_private_key,
    load_key_file,
    private_key_pem,
)
from mcmig.node.runtime import SipNode
from mcmig.nodes.deployment import start_deployment
from mcmig.profiles import Deployment, SystemProfile, load_deployment
from mcmig.profiles.keys import profile_keys
from tests.support.tools import ROOT, Mcmig, run_mcmig

ALICE, BOB = "sip:alice@primary.example", "sip:bob@primary.example"
PASSWORDS = {ALICE: "alice-demo-password", BOB: "bob-demo-password"}
DEMO = load_deployment(ROOT / "sip_profiles" / "demo.yaml")


def _system(deployment: Deployment, domain: str) -> SystemProfile:
    system = deployment.system(domain)
    assert system is not None
    return system


PRIMARY, PARTNER = _system(DEMO, "primary.example"), _system(DEMO, "partner.example")


@asynccontextmanager
async def idms(
    *systems: SystemProfile, deployment: Deployment = DEMO, throttle: LoginThrottle | None = None
) -> AsyncIterator[dict[str, IdmsServer]]:
    servers = {}
    try:
        for system in systems:
            server = IdmsServer(
                IdentityProvider(system, deployment),
                system.idms.listen,
                system.idms.tls_cert,
                system.idms.tls_key,
                throttle,
            )
            await server.start()
            servers[system.domain] = server
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _get(url: str, **params: str) -> tuple[int, str, dict[str, str]]:
    connector = aiohttp.TCPConnector(ssl=https_client_context(PRIMARY.idms.tls_ca))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, params=params, allow_redirects=False) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def _post(url: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    connector = aiohttp.TCPConnector(ssl=https_client_context(PRIMARY.idms.tls_ca))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=form, allow_redirects=False) as response,
    ):
        text = await response.text()
        try:
            body: Any = await response.json(content_type=None)
        except ValueError:
            body = text
        return response.status, body, dict(response.headers)


def _authorize_params(challenge: str, method: str = "S256", **more: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid 3gpp:mc:ptt_service",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": method,
    }
    return {k: v for k, v in {**params, **more}.items() if v}


async def _code(challenge: str, method: str = "S256") -> str:
    form = {**_authorize_params(challenge, method), "username": "alice"}
    form["password"] = PASSWORDS[ALICE]
    status, _, headers = await _post(f"{PRIMARY.idms.issuer}/authorize", form)
    assert status == 302, headers
    return parse_qs(urlsplit(headers["Location"]).query)["code"][0]


# -- discovery, JWKS and the code flow -------------------------------------------------------


def test_discovery_and_jwks_publish_the_public_key_only() -> None:
    async def main() -> None:
        async with idms(PRIMARY):
            status, text, _ = await _get(f"{PRIMARY.idms.issuer}/.well-known/openid-configuration")
            assert status == 200
            meta = json.loads(text)
            assert meta["issuer"] == PRIMARY.idms.issuer
            assert meta["code_challenge_methods_supported"] == ["S256"]
            assert (
                "urn:ietf:params:oauth:grant-type:token-exchange" in meta["grant_types_supported"]
            )
            status, text, headers = await _get(meta["jwks_uri"])
            keys = json.loads(text)["keys"]
            assert status == 200 and "max-age" in headers["Cache-Control"]
            assert len(keys) == 1 and "d" not in keys[0] and keys[0]["alg"] == "ES256"

    _run(main())


def test_code_flow_gives_an_id_token_with_mc_claims_and_an_access_token_servers_verify() -> None:
    async def main() -> None:
        async with (
            idms(PRIMARY),
            IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client,
        ):
            tokens = await client.login("alice", PASSWORDS[ALICE])
            keys = JwksKeys(PRIMARY.idms.issuer, https_client_context(PRIMARY.idms.tls_ca))
            verifier = TokenVerifier("primary.example", keys)
            claims = await verifier.check(tokens.access_token, ALICE)
            assert claims["mcptt_id"] == ALICE and claims["iss"] == PRIMARY.idms.issuer
            assert tokens.id_token is not None and tokens.refresh_token is not None
            key = keys.key(jwt.get_unverified_header(tokens.id_token)["kid"])
            assert key is not None
            id_claims = jwt.decode(
                tokens.id_token, key.public_key, algorithms=["ES256"], audience=CLIENT_ID
            )
            assert id_claims["sub"] == ALICE and id_claims["mcptt_id"] == ALICE
            # The ID token is for the client, never for MC service servers.
            with pytest.raises(TokenError):
                verifier.verify(tokens.id_token, ALICE)

    _run(main())


def test_refresh_gives_new_tokens_and_a_used_refresh_token_is_refused() -> None:
    async def main() -> None:
        async with (
            idms(PRIMARY),
            IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client,
        ):
            first = await client.login("alice", PASSWORDS[ALICE])
            assert first.refresh_token is not None
            second = await client.refresh(first.refresh_token)
            assert second.access_token != first.access_token and second.refresh_token
            with pytest.raises(LoginError) as refused:
                await client.refresh(first.refresh_token)
            assert refused.value.error == "invalid_grant"

    _run(main())


def test_a_wrong_password_and_an_unknown_user_are_refused_alike() -> None:
    async def main() -> None:
        async with (
            idms(PRIMARY),
            IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client,
        ):
            for user, password in [("alice", "wrong"), ("mallory", PASSWORDS[ALICE])]:
                with pytest.raises(LoginError) as refused:
                    await client.login(user, password)
                assert (refused.value.status, refused.value.error) == (401, "access_denied")

    _run(main())


def test_failed_logins_from_one_address_wait_and_are_refused_before_any_hash() -> None:
    throttle = LoginThrottle(failures=3, window=60)

    async def main() -> None:
        async with (
            idms(PRIMARY, throttle=throttle) as servers,
            IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client,
        ):
            provider = servers[PRIMARY.domain].provider
            checked: list[str] = []
            authenticate = provider.authenticate

            def counting(username: str, password: str) -> str | None:
                checked.append(username)
                return authenticate(username, password)

            provider.authenticate = counting  # type: ignore[method-assign]
            for _ in range(3):
                with pytest.raises(LoginError) as refused:
                    await client.login("alice", "wrong")
                assert refused.value.status == 401
            # the right password now waits too: the address is what is limited
            with pytest.raises(LoginError) as refused:
                await client.login("alice", PASSWORDS[ALICE])
            assert (refused.value.status, refused.value.error) == (429, "temporarily_unavailable")
            assert "retry after" in str(refused.value)
            assert checked == ["alice"] * 3  # no hash computed for the refused one
            _, page = await _authorize_page()
            status, _, headers = await _post(
                f"{PRIMARY.idms.issuer}/authorize",
                {**page, "username": "alice", "password": PASSWORDS[ALICE]},
            )
            assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
            # as many checks in progress as allowed: refused at once, not queued
            throttle.succeeded("127.0.0.1")
            throttle.checking = throttle.checks_at_once
            with pytest.raises(LoginError) as refused:
                await client.login("alice", PASSWORDS[ALICE])
            assert refused.value.status == 503
            throttle.checking = 0
            assert (await client.login("alice", PASSWORDS[ALICE])).access_token
            assert checked == ["alice"] * 4

    _run(main())


async def _authorize_page() -> tuple[int, dict[str, str]]:
    """The parameters a login form posts back (PKCE S256, any verifier)."""
    _, challenge = pkce_pair()
    params = _authorize_params(challenge)
    status, _, _ = await _get(f"{PRIMARY.idms.issuer}/authorize", **params)
    return status, params


# -- PKCE --------------------------------------------------------------------------------------


def _redeem(code: str, verifier: str | None) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return form


def test_pkce_a_wrong_or_missing_verifier_and_the_plain_method_are_refused() -> None:
    async def main() -> None:
        async with idms(PRIMARY):
            token_url = f"{PRIMARY.idms.issuer}/token"
            verifier, challenge = pkce_pair()
            other, _ = pkce_pair()
            status, body, _ = await _post(token_url, _redeem(await _code(challenge), other))
            assert (status, body["error"]) == (400, "invalid_grant")
            status, body, _ = await _post(token_url, _redeem(await _code(challenge), None))
            assert (status, body["error"]) == (400, "invalid_request")
            # plain, or no challenge at all: refused at the authorization endpoint,
            # by redirect since the client and its redirect URI are good.
            for params in (_authorize_params(verifier, "plain"), _authorize_params("", "")):
                status, _, headers = await _get(f"{PRIMARY.idms.issuer}/authorize", **params)
                error = parse_qs(urlsplit(headers["Location"]).query)["error"]
                assert (status, error) == (302, ["invalid_request"])
            # and the right verifier works, once
            code = await _code(challenge)
            status, body, _ = await _post(token_url, _redeem(code, verifier))
            assert status == 200 and body["access_token"]
            status, body, _ = await _post(token_url, _redeem(code, verifier))
            assert (status, body["error"]) == (400, "invalid_grant")

    _run(main())


def test_a_bad_redirect_uri_gets_a_page_never_a_redirect() -> None:
    async def main() -> None:
        async with idms(PRIMARY):
            _, challenge = pkce_pair()
            params = _authorize_params(challenge, redirect_uri="https://evil.example/cb")
            status, text, headers = await _get(f"{PRIMARY.idms.issuer}/authorize", **params)
            assert status == 400 and "Location" not in headers and "evil" in text

    _run(main())


# -- the inter-domain exchange -------------------------------------------------------------


def test_alice_gets_a_partner_token_that_the_partner_servers_verify() -> None:
    async def main() -> None:
        async with idms(PRIMARY, PARTNER):
            token = await access_token_for(DEMO, ALICE, PASSWORDS[ALICE], "partner.example")
            keys = JwksKeys(PARTNER.idms.issuer, https_client_context(PARTNER.idms.tls_ca))
            claims = await TokenVerifier("partner.example", keys).check(token, ALICE)
            assert claims["iss"] == PARTNER.idms.issuer and claims["aud"] == "partner.example"
            # the primary's own token is not good at the partner
            home = await access_token_for(DEMO, ALICE, PASSWORDS[ALICE], "primary.example")
            with pytest.raises(TokenError):
                await TokenVerifier("partner.example", keys).check(home, ALICE)

    _run(main())


def test_the_primary_idms_refuses_an_exchange_its_migration_policy_forbids() -> None:
    async def main() -> None:
        async with idms(PRIMARY, PARTNER):
            with pytest.raises(LoginError) as refused:
                await access_token_for(DEMO, BOB, PASSWORDS[BOB], "partner.example")
            assert (refused.value.status, refused.value.error) == (400, "invalid_target")
            assert refused.value.issuer == PRIMARY.idms.issuer
            async with IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client:
                tokens = await client.login("alice", PASSWORDS[ALICE])
                with pytest.raises(LoginError) as unknown:
                    await client.exchange(tokens.access_token, "https://127.0.7.7:8443")
                assert unknown.value.error == "invalid_target"
                with pytest.raises(LoginError) as not_a_token:
                    await client.exchange("a.b.c", PARTNER.idms.issuer)
                assert not_a_token.value.error == "invalid_grant"

    _run(main())


def test_the_partner_idms_takes_assertions_only_from_primaries_it_trusts_and_once() -> None:
    refusing = dataclasses.replace(
        PARTNER, visitors=VisitorPolicy(default_accept=False, accept_systems=frozenset())
    )
    untrusting = dataclasses.replace(DEMO, systems=(PRIMARY, refusing))

    async def main(deployment: Deployment, partner: SystemProfile) -> str:
        async with idms(PRIMARY, partner, deployment=deployment):
            async with IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client:
                tokens = await client.login("alice", PASSWORDS[ALICE])
                assertion = await client.exchange(tokens.access_token, PARTNER.idms.issuer)
            async with IdmsClient(PARTNER.idms.issuer, PARTNER.idms.tls_ca) as client:
                await client.jwt_bearer(assertion)
                await client.jwt_bearer(assertion)  # a replay
        return "granted twice"

    with pytest.raises(LoginError) as untrusted:
        _run(main(untrusting, refusing))
    assert untrusted.value.error == "invalid_grant"
    with pytest.raises(LoginError) as replay:
        _run(main(DEMO, PARTNER))
    assert replay.value.error == "invalid_grant" and "already used" in str(replay.value)


# -- keys: rotation, removal, an unreachable JWKS ------------------------------------------


def _new_key(path: Path) -> Path:
    path.write_bytes(private_key_pem(generate_private_key()))
    return path


def test_rotation_both_keys_verify_and_a_removed_key_is_refused_without_restart(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731

    async def main() -> None:
        async with idms(PRIMARY) as servers:
            keys = servers["primary.example"].provider.keys
            verifier = TokenVerifier(
                "primary.example",
                JwksKeys(
                    PRIMARY.idms.issuer,
                    https_client_context(PRIMARY.idms.tls_ca),
                    max_age=60,
                    min_interval=5,
                    clock=clock,
                ),
            )

            async def alice_token() -> str:
                async with IdmsClient(PRIMARY.idms.issuer, PRIMARY.idms.tls_ca) as client:
                    return (await client.login("alice", PASSWORDS[ALICE])).access_token

            old = await alice_token()
            await verifier.check(old, ALICE)
            # a new key signs; the old one is still published
            keys.reload((_new_key(tmp_path / "new.pem"), *PRIMARY.idms.key_files))
            new = await alice_token()
            assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
            # within min_interval of the last read, an unknown kid is not read for
            with pytest.raises(TokenError, match="unknown kid"):
                await verifier.check(new, ALICE)
            now[0] += 6
            await verifier.check(new, ALICE)  # unknown kid: the JWKS is read again
            await verifier.check(old, ALICE)
            # the old key withdrawn: refused once the cache has aged out
            keys.reload((tmp_path / "new.pem",))
            now[0] += 61
            await verifier.check(new, ALICE)
            with pytest.raises(TokenError, match="unknown kid"):
                await verifier.check(old, ALICE)

    _run(main())


def test_unknown_kids_do_not_make_a_verifier_hammer_the_idms() -> None:
    now = [0.0]

    async def main() -> None:
        async with idms(PRIMARY):
            keys = JwksKeys(
                PRIMARY.idms.issuer,
                https_client_context(PRIMARY.idms.tls_ca),
                min_interval=10,
                clock=lambda: now[0],
            )
            verifier = TokenVerifier("primary.example", keys)
            forged = jwt.encode({"sub": ALICE}, generate_private_key(), "ES256", {"kid": "zz"})
            for _ in range(20):
                with pytest.raises(TokenError, match="unknown kid"):
                    await verifier.check(forged, ALICE)
            assert keys.reads == 1
            now[0] += 11
            with pytest.raises(TokenError):
                await verifier.check(forged, ALICE)
            assert keys.reads == 2

    _run(main())


def test_an_unreachable_jwks_fails_closed_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    keys = JwksKeys(
        PRIMARY.idms.issuer,  # no IdMS running there
        https_client_context(PRIMARY.idms.tls_ca),
        min_interval=1,
        clock=lambda: now[0],
    )
    verifier = TokenVerifier("primary.example", keys)
    token = jwt.encode({"sub": ALICE}, generate_private_key(), "ES256", {"kid": "k1"})

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(TokenError):
                await verifier.check(token, ALICE)
            now[0] += 2

    with caplog.at_level(logging.WARNING, logger="mcmig.mc.jwks"):
        _run(main())
    assert keys.reads == 3
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "unreadable" in r.message)
    ) == 1


def test_garbage_at_the_token_endpoint_gets_an_oauth_error_not_a_500() -> None:
    async def main() -> None:
        async with idms(PRIMARY, PARTNER):
            url = f"{PARTNER.idms.issuer}/token"
            for form in [
                {},
                {"grant_type": "password", "username": "a", "password": "b"},
                {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x"},
                {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"},
                {"grant_type": "authorization_code", "code": "x" * 5000, "client_id": "nobody"},
            ]:
                status, body, _ = await _post(url, form)
                assert status in (400, 401) and isinstance(body, dict) and body["error"], form
            status, _, _ = await _post(url, {"grant_type": "x" * (100 * 1024)})
            assert status == 413

    _run(main())


# -- migration end to end ------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["demo.yaml", "direct.yaml"])
def test_migration_with_idms_tokens_end_to_end(tmp_path: Path, profile: str) -> None:
    deployment = load_deployment(ROOT / "sip_profiles" / profile)

    async def main() -> tuple[int, int]:
        running = await start_deployment(deployment, tmp_path)
        client = SipNode("client", "127.0.2.100", 5062)
        await client.start()
        try:
            token = await access_token_for(deployment, ALICE, PASSWORDS[ALICE], "partner.example")
            accepted = await migrate_once(deployment, ALICE, "partner.example", token, client)
            home_token = await access_token_for(
                deployment, ALICE, PASSWORDS[ALICE], "primary.example"
            )
            home = await migrate_once(deployment, ALICE, "primary.example", home_token, client)
            return accepted.status, home.status
        finally:
            await client.stop()
            await running.stop()

    assert _run(main()) == (200, 200)


# -- the command line's tools ------------------------------------------------------------------


def test_hash_password_makes_a_hash_the_idms_accepts() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "mcmig.cli", "idms", "hash-password"],
        input="s3cret\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    hashed = made.stdout.strip()
    assert check_password({"ann": hashed}, "ann", "s3cret")
    assert not check_password({"ann": hashed}, "ann", "s3cret ")


def test_token_issue_signs_with_the_key_given(tmp_path: Path) -> None:
    key = _new_key(tmp_path / "k.pem")
    args = ["token", "issue", "--profile", "sip_profiles/demo.yaml", "--system", "partner.example"]
    args += ["--sub", ALICE, "--key", str(key), "--audience", "elsewhere.example"]
    made = run_mcmig(*args)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    public = load_key_file(key)[0]
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="elsewhere.example")
    assert claims["sub"] == ALICE and claims["iss"] == PARTNER.idms.issuer
    # a key the partner IdMS does not publish: its servers refuse the token
    assert jwt.get_unverified_header(token)["kid"] not in set(profile_keys(PARTNER).kids())


def test_sighup_makes_a_running_idms_take_the_profile_keys_again(tmp_path: Path) -> None:
    for material in ("keys", "certs"):
        shutil.copytree(ROOT / "sip_profiles" / material, tmp_path / material)
    text = (ROOT / "sip_profiles" / "demo.yaml").read_text()
    profile = tmp_path / "demo.yaml"
    profile.write_text(text)
    _new_key(tmp_path / "keys" / "new.pem")
    jwks = f"{PRIMARY.idms.issuer}/jwks"

    def kids() -> list[str]:
        return [k["kid"] for k in json.loads(_run(_get(jwks))[1])["keys"]]

    def reload(keys: str) -> list[str]:
        before = kids()
        profile.write_text(text.replace("keys: [keys/primary-idms.pem]", f"keys: [{keys}]"))
        up.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while kids() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        return kids()

    up = Mcmig("up", str(profile), "--only", "primary-idms", "--state-dir", str(tmp_path / "s"))
    try:
        (old,) = kids()
        published = reload("keys/new.pem, keys/primary-idms.pem")
        assert len(published) == 2 and published[1] == old
        (new,) = reload("keys/new.pem")
        assert new == published[0]
        profile.write_text(text.replace("keys/primary-idms.pem", "keys/missing.pem"))
        up.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert kids() == [new]  # a profile that cannot be used changes nothing
    finally:
        assert up.stop() == 0
    assert "SIGHUP: profile not reloaded, IdMS keys unchanged" in up.stderr
    assert "Traceback" not in up.stderr


def test_a_partner_whose_idms_is_down_refuses_tokens_and_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails closed: without its JWKS the partner server cannot verify, so it
    refuses (invalid-credentials), however good the token."""
    only = set(DEMO.node_names()) - {"partner-idms"}

    async def main() -> list[tuple[int, str | None]]:
        running = await start_deployment(DEMO, tmp_path, only=only)
        client = SipNode("client", "127.0.2.100", 5062)
        await client.start()
        outcomes = []
        try:
            for user in (ALICE, "sip:erin@primary.example"):
                token = token_for(DEMO, "partner.example", user)
                outcome = await migrate_once(DEMO, user, "partner.example", token, client)
                outcomes.append((outcome.status, outcome.cause))
        finally:
            await client.stop()
            await running.stop()
        return outcomes

    with caplog.at_level(logging.WARNING, logger="mcmig.mc.jwks"):
        outcomes = _run(main())
    assert outcomes == [(403, "invalid-credentials")] * 2
    unreadable = [r for r in caplog.records if "unreadable" in r.message]
    assert len(unreadable) == 1 and PARTNER.idms.issuer in unreadable[0].message

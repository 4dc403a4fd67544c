"""Access token checks (PROFILE 2.1): every refusal names invalid-credentials upstream."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.tokens import (
    IdmsKey,
    TokenError,
    TokenVerifier,
    generate_private_key,
    issue_token,
    public_key_pem,
)

SUB = "sip:alice@primary.example"


def _key(kid: str = "k1", issuer: str = "https://idms.partner.example") -> IdmsKey:
    private = generate_private_key()
    return IdmsKey(issuer, kid, private.public_key(), private)


KEY = _key()
VERIFIER = TokenVerifier("partner.example", [IdmsKey(KEY.issuer, KEY.kid, KEY.public_key)])


def test_a_bearer_token_verifies_as_often_as_it_is_presented() -> None:
    # RFC 6750 / TS 33.180: reusable until it expires, so a client may retry.
    token = issue_token(KEY, "partner.example", SUB, temporary_id="sip:t-1@partner.example")
    for _ in range(3):
        claims = VERIFIER.verify(token, SUB)
    assert claims["temporary_id"] == "sip:t-1@partner.example"
    assert {"iss", "sub", "aud", "exp", "iat", "jti"} <= set(claims)
    assert not [name for name in vars(VERIFIER) if "used" in name or "seen" in name]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": KEY.issuer,
        "sub": SUB,
        "aud": "partner.example",
        "iat": now,
        "exp": now + 3000,  # 50 minutes: still valid however long the suite runs
        "jti": "j",
    }
    claims.update(over)
    return claims


def _signed(claims: dict[str, object], key: IdmsKey = KEY) -> str:
    """Signed with the right key, so that the signature passes and the claim check refuses."""
    assert key.private_key is not None
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})


_NOW = int(time.time())
# Each refusal with the reason it must be refused for: one check at a time.
REFUSED = {
    "alg none": (_b64({"alg": "none", "kid": "k1"}) + "." + _b64(_claims()) + ".", "algorithm"),
    "HS256 keyed with a secret": (
        jwt.encode(
            _claims(),
            "a-shared-secret-that-is-long-enough-for-hs256",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        "algorithm",
    ),
    "unknown kid": (issue_token(_key("other"), "partner.example", SUB), "unknown kid"),
    "signed by another key, same kid": (
        issue_token(_key("k1"), "partner.example", SUB),
        "InvalidSignature",
    ),
    "wrong audience": (_signed(_claims(aud="primary.example")), "InvalidAudience"),
    "wrong issuer, right key": (_signed(_claims(iss="https://evil.example")), "InvalidIssuer"),
    "wrong subject": (_signed(_claims(sub="sip:bob@primary.example")), "sub does not match"),
    "expired": (_signed(_claims(iat=_NOW - 700, exp=_NOW - 100)), "expired"),
    # a day ahead: still ahead however long the suite runs before this test
    "issued in the future": (_signed(_claims(iat=_NOW + 86400, exp=_NOW + 87000)), "future"),
    "not yet valid": (_signed(_claims(nbf=_NOW + 86400, exp=_NOW + 3000)), "nbf"),
    "lifetime over the cap": (_signed(_claims(iat=_NOW, exp=_NOW + 3601)), "lifetime"),
    "iat not a number": (_signed(_claims(iat="yesterday")), "iat"),
    "no jti": (_signed({k: v for k, v in _claims().items() if k != "jti"}), "jti"),
    "no exp": (_signed({k: v for k, v in _claims().items() if k != "exp"}), "exp"),
    "garbage": ("not.a.token", "unreadable"),
    "header not base64url": ("e30!." + _b64(_claims()) + ".c2ln", "unreadable"),
    "header not JSON": (
        base64.urlsafe_b64encode(b"{alg").decode().rstrip("=") + ".e30.c2ln",
        "unreadable",
    ),
    "header a JSON list": (
        base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".e30.c2ln",
        "unreadable",
    ),
    "empty": ("", "unreadable"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_for_its_own_reason(name: str) -> None:
    token, reason = REFUSED[name]
    with pytest.raises(TokenError, match=reason):
        VERIFIER.verify(token, SUB)


def test_the_same_claims_pass_when_the_one_fault_is_removed() -> None:
    # The refusals above are each one claim away from a good token.
    now = int(time.time())
    assert VERIFIER.verify(_signed(_claims()), SUB)
    assert VERIFIER.verify(_signed(_claims(iat=now, exp=now + 3600)), SUB)


def test_the_lifetime_cap_is_the_profile_s() -> None:
    strict = TokenVerifier(
        "partner.example", [IdmsKey(KEY.issuer, KEY.kid, KEY.public_key)], max_lifetime=300
    )
    with pytest.raises(TokenError, match="lifetime 3000 s exceeds 300 s"):
        strict.verify(_signed(_claims()), SUB)
    now = int(time.time())  # not _NOW: the suite may reach this test minutes later
    assert strict.verify(_signed(_claims(iat=now, exp=now + 300)), SUB)


@given(st.text(max_size=300))
def test_any_text_is_refused_as_a_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        VERIFIER.verify(text, SUB)


def test_a_padded_header_segment_is_read() -> None:
    token = issue_token(KEY, "partner.example", SUB)
    head, rest = token.split(".", 1)
    padded = head + "=" * (-len(head) % 4)
    assert padded != head  # this header's length needs padding
    # The key is found; PyJWT then refuses or accepts the padding itself.
    try:
        VERIFIER.verify(f"{padded}.{rest}", SUB)
    except TokenError as exc:
        assert "kid" not in str(exc) and "unreadable" not in str(exc)


def test_hs256_with_public_key_bytes_is_refused_before_any_check() -> None:
    # The classic confusion attack: HMAC keyed with the verifier's public key.
    pem = public_key_pem(KEY.public_key)
    header = _b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    payload = _b64(_claims())
    import hashlib
    import hmac

    sig = (
        base64.urlsafe_b64encode(
            hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(TokenError, match="algorithm"):
        VERIFIER.verify(f"{header}.{payload}.{sig}", SUB)


def test_leeway_of_30_seconds() -> None:
    assert VERIFIER.verify(issue_token(KEY, "partner.example", SUB, ttl=-10), SUB)
    with pytest.raises(TokenError):
        VERIFIER.verify(issue_token(KEY, "partner.example", SUB, ttl=-45), SUB)
    future = issue_token(KEY, "partner.example", SUB, now=time.time() + 120)
    with pytest.raises(TokenError):
        VERIFIER.verify(future, SUB)


def test_verification_runs_on_the_clock_it_is_given() -> None:
    token = issue_token(KEY, "partner.example", SUB, ttl=60, now=1_000_000)
    assert VERIFIER.verify(token, SUB, now=1_000_030)
    with pytest.raises(TokenError, match="expired"):
        VERIFIER.verify(token, SUB, now=1_000_100)

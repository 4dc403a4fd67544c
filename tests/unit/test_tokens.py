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


def test_valid_token_with_temporary_id_is_good_once() -> None:
    token = issue_token(KEY, "partner.example", SUB, temporary_id="sip:t-1@partner.example")
    claims = VERIFIER.verify(token, SUB)
    with pytest.raises(TokenError, match="replayed"):
        VERIFIER.verify(token, SUB)
    assert claims["temporary_id"] == "sip:t-1@partner.example"
    assert {"iss", "sub", "aud", "exp", "iat", "jti"} <= set(claims)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": KEY.issuer,
        "sub": SUB,
        "aud": "partner.example",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
    }
    claims.update(over)
    return claims


REFUSED = {
    "alg none": _b64({"alg": "none", "kid": "k1"}) + "." + _b64(_claims()) + ".",
    "HS256 keyed with the public key": jwt.encode(
        _claims(),
        "a-shared-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
        headers={"kid": "k1"},
    ),
    "unknown kid": issue_token(_key("other"), "partner.example", SUB),
    "signed by another key, same kid": issue_token(_key("k1"), "partner.example", SUB),
    "wrong audience": issue_token(KEY, "primary.example", SUB),
    "wrong subject": issue_token(KEY, "partner.example", "sip:bob@primary.example"),
    "expired": issue_token(KEY, "partner.example", SUB, ttl=-120),
    "wrong issuer": issue_token(_key("k1", "https://evil.example"), "partner.example", SUB),
    "garbage": "not.a.token",
    "header not base64url": "e30!." + _b64(_claims()) + ".c2ln",
    "header not JSON": base64.urlsafe_b64encode(b"{alg").decode().rstrip("=") + ".e30.c2ln",
    "header a JSON list": base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".e30.c2ln",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name: str) -> None:
    with pytest.raises(TokenError):
        VERIFIER.verify(REFUSED[name], SUB)


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


def test_used_tokens_are_forgotten_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(
        "partner.example", [IdmsKey(KEY.issuer, KEY.kid, KEY.public_key)], leeway=0
    )
    tokens = [issue_token(KEY, "partner.example", SUB, ttl=60) for _ in range(5)]
    for token in tokens:
        verifier.verify(token, SUB)
    assert verifier.remembered == 5
    fresh = issue_token(KEY, "partner.example", SUB, ttl=600)
    now = time.time()
    monkeypatch.setattr("mcmig.mc.tokens.time.time", lambda: now + 120)
    # our clock has moved past their expiry: the next verification forgets them
    verifier.verify(fresh, SUB)
    assert verifier.remembered == 1

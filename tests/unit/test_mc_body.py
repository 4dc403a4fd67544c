from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcmig.mc.body import (
    BodyError,
    MigrationFailure,
    MigrationRelease,
    MigrationRequest,
    decode,
    encode,
)

NS = "urn:mcmig:params:xml:ns:migration:1"


def test_profile_examples_decode() -> None:
    leg1 = f"""<?xml version="1.0" encoding="UTF-8"?>
<migration xmlns="{NS}">
  <request>
    <mc-service-id>sip:alice@primary.example</mc-service-id>
    <access-token>eyJhbGciOiJFUzI1NiIs</access-token>
  </request>
</migration>""".encode()
    assert decode(leg1) == MigrationRequest(
        "sip:alice@primary.example", access_token="eyJhbGciOiJFUzI1NiIs"
    )
    failure = f'<migration xmlns="{NS}"><failure cause="migration-not-permitted">free text</failure></migration>'
    assert decode(failure.encode()) == MigrationFailure("migration-not-permitted", "free text")
    release = f"<migration xmlns='{NS}'><release><mc-service-id>sip:a@p.example</mc-service-id><partner-system>x.example</partner-system></release></migration>"
    assert decode(release.encode()) == MigrationRelease("sip:a@p.example", "x.example")


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<migration xmlns="urn:other"><request/></migration>',
        f'<migration xmlns="{NS}"></migration>'.encode(),
        f'<migration xmlns="{NS}"><request></request></migration>'.encode(),
        f'<migration xmlns="{NS}"><request><mc-service-id>alice</mc-service-id></request></migration>'.encode(),
        f'<migration xmlns="{NS}"><request><mc-service-id>sip:a@b.example</mc-service-id><mc-service-id>sip:a@b.example</mc-service-id></request></migration>'.encode(),
        f'<migration xmlns="{NS}"><request><mc-service-id>sip:a@b.example</mc-service-id><evil/></request></migration>'.encode(),
        f'<migration xmlns="{NS}"><request><mc-service-id>sip:a@b.example</mc-service-id><partner-address>nope</partner-address></request></migration>'.encode(),
        # an encoding Python does not know (found by the atheris run: was LookupError)
        f'<?xml version="1.0" encoding="UTF-6"?><migration xmlns="{NS}"><request><mc-service-id>sip:a@b.example</mc-service-id></request></migration>'.encode(),
        # XXE and entity expansion are refused by defusedxml before any expansion
        f'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><migration xmlns="{NS}"><request><mc-service-id>&x;</mc-service-id></request></migration>'.encode(),
        f'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><migration xmlns="{NS}"><request><mc-service-id>&b;</mc-service-id></request></migration>'.encode(),
    ],
)
def test_invalid_bodies_are_400(body: bytes) -> None:
    with pytest.raises(BodyError) as info:
        decode(body)
    assert info.value.status == 400


def test_huge_body_is_413() -> None:
    with pytest.raises(BodyError) as info:
        decode(b"<" * 20000)
    assert info.value.status == 413


users = st.from_regex(r"sip:[a-z][a-z0-9]{0,8}@[a-z]{1,8}\.example", fullmatch=True)


@given(
    st.one_of(
        st.builds(
            MigrationRequest,
            users,
            access_token=st.one_of(st.none(), st.text("abcXYZ012._-", min_size=1, max_size=40)),
            partner_system=st.one_of(
                st.none(), st.from_regex(r"[a-z]{1,8}\.example", fullmatch=True)
            ),
            partner_address=st.one_of(st.none(), st.just("sip:127.0.9.2:5060")),
            temporary_id=st.one_of(st.none(), users),
        ),
        st.builds(MigrationRelease, users, st.one_of(st.none(), st.just("partner.example"))),
        st.builds(
            MigrationFailure,
            st.sampled_from(["bad-request", "unknown-user"]),
            st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), max_size=30).map(
                str.strip
            ),
        ),
    )
)
def test_encode_decode_round_trip(
    body: MigrationRequest | MigrationRelease | MigrationFailure,
) -> None:
    assert decode(encode(body)) == body


@given(st.binary(max_size=500))
def test_decode_raises_only_body_error(data: bytes) -> None:
    with contextlib.suppress(BodyError):
        decode(data)


def test_deep_nesting_and_huge_bodies_are_refused() -> None:
    deep = f'<migration xmlns="{NS}">'.encode() + b"<a>" * 5000 + b"</a>" * 5000 + b"</migration>"
    with pytest.raises(BodyError) as info:
        decode(deep)
    assert info.value.status in (400, 413)
    huge = f'<migration xmlns="{NS}"><request><mc-service-id>sip:a@b.example</mc-service-id><access-token>'.encode()
    with pytest.raises(BodyError) as info:
        decode(huge + b"x" * 100_000 + b"</access-token></request></migration>")
    assert info.value.status == 413

"""RFC 4475 torture messages: which layer deals with each, and how.

The parser must accept the valid ones (3.1.1, 3.2, 3.3, 3.4) and refuse the
invalid ones (3.1.2) with the status the RFC names. Messages whose fault lies
above the parser (3.3) are answered by a running node: see
tests/integration/test_rfc4475_node.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcmig.sip.errors import SipParseError
from mcmig.sip.parser import parse_message

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rfc4475"

# name -> status the parser's error carries (None: the parser must accept it)
PARSER_VERDICT: dict[str, int | None] = {
    # 3.1.1 valid
    **dict.fromkeys(
        [
            "wsinv",
            "intmeth",
            "esc01",
            "escnull",
            "esc02",
            "lwsdisp",
            "longreq",
            "dblreq",
            "semiuri",
            "transports",
            "mpart01",
            "unreason",
            "noreason",
        ]
    ),
    # 3.1.2 invalid: refused by the parser
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": 400,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,
    "bigcode": 400,
    # 3.2 transaction layer: well-formed
    "badbranch": None,
    # 3.3 application layer: well-formed except insuf, multi01 and mcl01, which a
    # strict parser catches itself (missing or repeated single-valued headers)
    "insuf": 400,
    "multi01": 400,
    "mcl01": 400,
    **dict.fromkeys(
        [
            "unkscm",
            "novelsc",
            "unksm2",
            "bext01",
            "invut",
            "regaut01",
            "bcast",
            "zeromf",
            "cparam01",
            "cparam02",
            "regescrt",
            "sdp01",
        ]
    ),
    # 3.4 backward compatibility
    "inv2543": None,
}


def test_table_covers_the_whole_corpus() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.dat")) == sorted(PARSER_VERDICT)
    assert len(PARSER_VERDICT) == 49


@pytest.mark.parametrize("name", sorted(PARSER_VERDICT))
def test_parser_verdict(name: str) -> None:
    data = (CORPUS / f"{name}.dat").read_bytes()
    expected = PARSER_VERDICT[name]
    if expected is None:
        message = parse_message(data)
        # Whatever was accepted must serialize to something that parses the same.
        assert parse_message(message.serialize()) == message
    else:
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == expected


def test_details_of_valid_messages() -> None:
    wsinv = parse_message((CORPUS / "wsinv.dat").read_bytes())
    assert wsinv.to.tag == "1918181833n"
    assert wsinv.from_.display_name == 'J Rosenberg \\"'
    assert [v.transport for v in wsinv.vias] == ["UDP", "TCP", "UDP"]
    assert wsinv.vias[2].branch == "z9hG4bK30239"
    assert wsinv.max_forwards == 68 and wsinv.cseq.seq == 9
    intmeth = parse_message((CORPUS / "intmeth.dat").read_bytes())
    assert intmeth.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    dblreq = parse_message((CORPUS / "dblreq.dat").read_bytes())
    assert dblreq.method == "REGISTER" and dblreq.body == b""
    unreason = parse_message((CORPUS / "unreason.dat").read_bytes())
    assert unreason.reason.startswith("= 2**3 * 5**2")
    esc01 = parse_message((CORPUS / "esc01.dat").read_bytes())
    assert esc01.contacts[0].sip_uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}

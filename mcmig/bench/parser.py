"""Parser benchmark: parse and serialize rates for a 600-byte MESSAGE with an XML body.

Messages differ in branch, From tag and Call-ID, as real traffic does, so
caches only help where real traffic would let them (URIs, To, Contact).
aiosipua 0.7.1 is measured in the same process when installed (the
``bench`` extra). Its parse is lazy: it reads no typed header until asked,
so a second figure adds reading Via, From, To, CSeq and Call-ID, which any
SIP element must do, for both libraries.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from mcmig.sip.parser import parse_message

_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<migration xmlns="urn:mcmig:params:xml:ns:migration:1">\r\n'
    b"  <request>\r\n"
    b"    <mc-service-id>sip:alice@primary.example</mc-service-id>\r\n"
    b"    <partner-system>partner.example</partner-system>\r\n"
    b"    <partner-address>sip:127.0.9.2:5060</partner-address>\r\n"
    b"  </request>\r\n"
    b"</migration>\r\n"
)


def sample_messages(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        head = (
            "MESSAGE sip:alice@primary.example SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.2.10:5060;branch=z9hG4bK{i:012x};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:migration@partner.example>;tag={i:010d}\r\n"
            "To: <sip:alice@primary.example>\r\n"
            f"Call-ID: {i:020x}\r\n"
            "CSeq: 1 MESSAGE\r\n"
            "Content-Type: application/vnd.mcmig.migration+xml\r\n"
            f"Content-Length: {len(_BODY)}\r\n\r\n"
        )
        out.append(head.encode() + _BODY)
    return out


def _one_pass(fn: Callable[[bytes], object], messages: list[bytes]) -> float:
    gc.collect()
    start = time.perf_counter()
    for data in messages:
        fn(data)
    return len(messages) / (time.perf_counter() - start)


def _mcmig_typed(data: bytes) -> bytes:
    m = parse_message(data)
    _ = (m.vias, m.from_, m.to, m.cseq, m.call_id)
    return m.serialize()


def _figures() -> dict[str, dict[str, Callable[[bytes], object]]]:
    figures: dict[str, dict[str, Callable[[bytes], object]]] = {
        "mcmig": {
            "parse_per_s": parse_message,
            "round_trip_per_s": lambda d: parse_message(d).serialize(),
            "round_trip_typed_per_s": _mcmig_typed,
        }
    }
    try:
        from aiosipua.message import SipMessage
    except ImportError:
        return figures

    def typed(data: bytes) -> bytes:
        m = SipMessage.parse(data)
        _ = (m.via, m.from_addr, m.to_addr, m.cseq, m.call_id)
        return bytes(m)

    figures["aiosipua"] = {
        "parse_per_s": SipMessage.parse,
        "round_trip_per_s": lambda d: bytes(SipMessage.parse(d)),
        "round_trip_typed_per_s": typed,
    }
    return figures


def measure(quick: bool = False) -> dict[str, Any]:
    """Best of several passes per figure, the libraries' passes interleaved.

    Interleaving matters on shared machines: a slow spell then hits both sides.
    """
    count, repeats = (500, 2) if quick else (20000, 7)
    messages = sample_messages(count)
    figures = _figures()
    parsed = {d: parse_message(d) for d in messages}
    figures["mcmig"]["serialize_per_s"] = lambda d: parsed[d].serialize()
    if "aiosipua" in figures:
        from aiosipua.message import SipMessage

        theirs = {d: SipMessage.parse(d) for d in messages}
        figures["aiosipua"]["serialize_per_s"] = lambda d: bytes(theirs[d])
    best: dict[str, dict[str, float]] = {lib: dict.fromkeys(f, 0.0) for lib, f in figures.items()}
    for _ in range(repeats):
        for lib, fns in figures.items():
            for name, fn in fns.items():
                best[lib][name] = max(best[lib][name], _one_pass(fn, messages))
    results: dict[str, Any] = {
        "message_bytes": len(messages[0]),
        "messages": count,
        "mcmig": best["mcmig"],
        "aiosipua": best.get("aiosipua"),
    }
    return results


def report(results: dict[str, Any]) -> str:
    rows = ["parse_per_s", "serialize_per_s", "round_trip_per_s", "round_trip_typed_per_s"]
    theirs = results.get("aiosipua")
    lines = [
        f"parser: {results['messages']} distinct MESSAGEs "
        f"of {results['message_bytes']} bytes, one core",
        f"{'figure (messages/s)':<28}{'mcmig':>12}{'aiosipua 0.7.1':>16}{'ratio':>8}",
    ]
    for row in rows:
        ours = results["mcmig"][row]
        other = theirs[row] if theirs else None
        ratio = f"{ours / other:.2f}" if other else "-"
        other_text = f"{other:,.0f}" if other else "not installed"
        lines.append(f"{row:<28}{ours:>12,.0f}{other_text:>16}{ratio:>8}")
    return "\n".join(lines)

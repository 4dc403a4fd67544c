"""Text ladder (sequence) diagrams of a SIP flow, one lifeline per node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mcmig.mc.body import CONTENT_TYPE, BodyError, MigrationFailure, MigrationRequest, decode
from mcmig.sip.message import Request, Response
from mcmig.sip.peer import TransportAddress


class LadderEntry(Protocol):
    """One arrow: a trace entry or a message read from a capture."""

    @property
    def time(self) -> float: ...
    @property
    def source(self) -> TransportAddress: ...
    @property
    def destination(self) -> TransportAddress: ...
    @property
    def message(self) -> Request | Response: ...
    @property
    def label(self) -> str: ...


COLUMN = 22  # characters a lifeline takes at least; wider when a name needs it
MAX_COLUMN = 44  # an IPv6 address (39) and a margin


def column_width(lifelines: Sequence[str]) -> int:
    """Room for every lifeline's name, IPv6 addresses included, and an arrow label."""
    longest = max((len(name) for name in lifelines), default=0)
    return min(max(COLUMN, longest + 3), MAX_COLUMN)


def detail(message: Request | Response) -> str:
    if message.content_type != CONTENT_TYPE or not message.body:
        return ""
    try:
        body = decode(message.body)
    except BodyError:
        return ""
    if isinstance(body, MigrationFailure):
        return body.cause
    if isinstance(body, MigrationRequest):
        if body.access_token is not None:
            return "with access token"
        return f"partner-address {body.partner_address}"
    return type(body).__name__


def render(
    entries: Sequence[LadderEntry],
    lifelines: list[str],
    name_of: Callable[[TransportAddress], str],
    steps: list[str] | None = None,
    notes: dict[int, str] | None = None,
) -> str:
    """``lifelines`` orders the columns; ``name_of`` names the lifeline of an address.

    ``steps`` numbers the arrows (default 1, 2, ...); ``notes`` puts a line of
    text after the arrow with that index (0-based), e.g. the checks a node makes.
    """
    column = column_width(lifelines)
    width = column * (len(lifelines) - 1) + 1
    lines = ["".join(name.center(column)[:column] for name in lifelines)]
    axis = [" " * (column // 2) + "|" + " " * (column - column // 2 - 1)] * len(lifelines)
    start = entries[0].time if entries else 0.0
    for step, entry in enumerate(entries, 1):
        src, dst = name_of(entry.source), name_of(entry.destination)
        if src not in lifelines or dst not in lifelines:
            continue
        a, b = lifelines.index(src), lifelines.index(dst)
        left, right = min(a, b), max(a, b)
        row = list("".join(axis))
        x0 = left * column + column // 2
        x1 = right * column + column // 2
        for x in range(x0 + 1, x1):
            row[x] = "-"
        if a < b:
            row[x1 - 1] = ">"
        else:
            row[x0 + 1] = "<"
        number = steps[step - 1] if steps and step <= len(steps) else str(step)
        label = f"({number}) {entry.label}"
        mid = (x0 + x1) // 2 - len(label) // 2
        text = list("".join(axis))
        for i, ch in enumerate(label):
            if 0 <= mid + i < len(text):
                text[mid + i] = ch
        lines.append("".join(text).rstrip())
        lines.append(
            "".join(row)[: width + column].rstrip() + f"   +{(entry.time - start) * 1000:6.1f} ms"
        )
        extra = detail(entry.message)
        lines.append(f"{'':4}{entry.source} -> {entry.destination} {extra}".rstrip())
        if notes and step - 1 in notes:
            lines.append(f"{'':4}{notes[step - 1]}")
    return "\n".join(lines)

# ruff: noqa: E501 - SVG markup reads best one element a line
"""Ladder diagrams as SVG, for documents: one lifeline per node, one arrow per message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from mcmig.capture.ladder import LadderEntry, detail
from mcmig.sip.peer import TransportAddress

COLUMN, ROW, TOP, LEFT = 190, 46, 70, 110


def render_svg(
    entries: Sequence[LadderEntry], lifelines: list[str], name_of: Callable[[TransportAddress], str]
) -> str:
    # 7 px a character at 12 px bold: room for an IPv6 address under its lifeline
    column = max(COLUMN, 7 * max((len(n) for n in lifelines), default=0) + 20)
    width = LEFT + column * len(lifelines)
    height = TOP + ROW * (len(entries) + 1)
    x = {name: LEFT + column * i + column // 2 for i, name in enumerate(lifelines)}
    start = entries[0].time if entries else 0.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#1f4e79"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for name, cx in x.items():
        parts.append(
            f'<text x="{cx}" y="30" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        )
        parts.append(
            f'<line x1="{cx}" y1="40" x2="{cx}" y2="{height - 10}" stroke="#888" stroke-dasharray="4 3"/>'
        )
    for row, entry in enumerate(entries):
        src, dst = name_of(entry.source), name_of(entry.destination)
        if src not in x or dst not in x:
            continue
        y = TOP + ROW * row + 20
        x1, x2 = x[src], x[dst]
        label = f"({row + 1}) {entry.label}"
        extra = detail(entry.message)
        parts.append(
            f'<text x="10" y="{y + 4}" fill="#555">+{(entry.time - start) * 1000:.1f} ms</text>'
        )
        parts.append(
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#1f4e79" stroke-width="1.6" marker-end="url(#arrow)"/>'
        )
        mid = (x1 + x2) // 2
        parts.append(f'<text x="{mid}" y="{y - 6}" text-anchor="middle">{escape(label)}</text>')
        if extra:
            parts.append(
                f'<text x="{mid}" y="{y + 14}" text-anchor="middle" fill="#555" font-size="10">{escape(extra)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

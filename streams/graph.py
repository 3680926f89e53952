"""The wiring as a picture: Graphviz DOT, and an SVG drawn here so no Graphviz install is needed.

Topics are rounded boxes, agents are boxes; an arrow from a topic to an agent
is a subscription, from an agent to a topic an emit. Each pattern is drawn in
its own frame, the plain agents in one more, laid out left to right by how
far a node is from the topics nobody in its frame writes to.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from html import escape

from streams.topology import Topology

COLUMN_W, ROW_H, NODE_W, NODE_H, FRAME_PAD, TITLE_H = 250, 56, 200, 34, 20, 28


@dataclass(frozen=True)
class Frame:
    """One group of the picture: a pattern, or the agents no pattern made."""

    title: str
    agents: tuple[str, ...]
    topics: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    """(from, to) node ids: ``t:<topic>`` or ``a:<agent>``."""


def frames(topology: Topology) -> list[Frame]:
    by_pattern: dict[str | None, list[str]] = {}
    for agent in topology.agents.values():
        by_pattern.setdefault(agent.pattern, []).append(agent.name)
    out = []
    for pattern, agents in by_pattern.items():
        specs = [topology.agents[name] for name in agents]
        edges = [(f"t:{t}", f"a:{s.name}") for s in specs for t in s.inputs] + [(f"a:{s.name}", f"t:{t}") for s in specs for t in s.emits]
        topics = sorted({t for s in specs for t in (*s.inputs, *s.emits)})
        title = f"{pattern} ({topology.patterns[pattern].kind})" if pattern else "agents"
        out.append(Frame(title, tuple(agents), tuple(topics), tuple(edges)))
    return out


def to_dot(topology: Topology) -> str:
    lines = [f'digraph "{topology.app}" {{', "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    for i, frame in enumerate(frames(topology)):
        lines += [f"  subgraph cluster_{i} {{", f'    label="{frame.title}";']
        lines += [f'    "t:{t}" [label="{t}", shape=box, style="rounded,filled", fillcolor="#e8f0fe"];' for t in frame.topics]
        lines += [f'    "a:{a}" [label="{a}", shape=box, style=filled, fillcolor="#fde9d9"];' for a in frame.agents]
        lines += [f'    "{src}" -> "{dst}";' for src, dst in frame.edges]
        lines.append("  }")
    return "\n".join([*lines, "}"]) + "\n"


def to_svg(topology: Topology) -> str:
    body: list[str] = []
    top, width = 0, 0
    for frame in frames(topology):
        places = _layout(frame)
        w = max(x for x, _ in places.values()) + NODE_W + 2 * FRAME_PAD
        h = max(y for _, y in places.values()) + NODE_H + 2 * FRAME_PAD + TITLE_H
        body.append(f'<g transform="translate(0,{top})">{_frame_svg(frame, places, w, h)}</g>')
        top, width = top + h + FRAME_PAD, max(width, w)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top}" viewBox="0 0 {width} {top}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
    )
    return "\n".join([head, *body, "</svg>"]) + "\n"


def _layout(frame: Frame) -> dict[str, tuple[int, int]]:
    """Column = BFS distance from the frame's entry topics; rows in name order within a column."""
    nodes = [f"t:{t}" for t in frame.topics] + [f"a:{a}" for a in frame.agents]
    written = {dst for _, dst in frame.edges}
    starts = [n for n in nodes if n.startswith("t:") and n not in written] or nodes[:1]
    column = {n: 0 for n in starts}
    queue = deque(starts)
    while queue:
        node = queue.popleft()
        for src, dst in frame.edges:
            if src == node and dst not in column:
                column[dst] = column[node] + 1
                queue.append(dst)
    rows: dict[int, int] = {}
    places = {}
    for node in sorted(nodes, key=lambda n: (column.get(n, 0), n)):
        c = column.get(node, 0)
        places[node] = (FRAME_PAD + c * COLUMN_W, FRAME_PAD + TITLE_H + rows.get(c, 0) * ROW_H)
        rows[c] = rows.get(c, 0) + 1
    return places


def _frame_svg(frame: Frame, places: dict[str, tuple[int, int]], w: int, h: int) -> str:
    parts = [
        f'<rect x="1" y="1" width="{w - 2}" height="{h - 2}" rx="8" fill="none" stroke="#999" stroke-dasharray="4 3"/>',
        f'<text x="{FRAME_PAD}" y="{FRAME_PAD + 6}" font-weight="bold">{escape(frame.title)}</text>',
    ]
    parts += [_edge_svg(places[src], places[dst]) for src, dst in frame.edges]
    for node, (x, y) in places.items():
        topic = node.startswith("t:")
        fill, rx = ("#e8f0fe", 14) if topic else ("#fde9d9", 2)
        parts.append(f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="#555"/>')
        parts.append(f'<text x="{x + NODE_W // 2}" y="{y + NODE_H // 2 + 4}" text-anchor="middle">{escape(node[2:])}</text>')
    return "".join(parts)


def _edge_svg(src: tuple[int, int], dst: tuple[int, int]) -> str:
    """Forward edges leave right and enter left; backward ones loop below so they do not hide nodes."""
    (sx, sy), (dx, dy) = src, dst
    if dx > sx:
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H // 2, dx, dy + NODE_H // 2
        path = f"M{x1},{y1} C{x1 + 60},{y1} {x2 - 60},{y2} {x2},{y2}"
    else:
        x1, y1, x2, y2 = sx + NODE_W // 2, sy + NODE_H, dx + NODE_W // 2 + 20, dy + NODE_H
        path = f"M{x1},{y1} C{x1},{y1 + 40} {x2},{y2 + 40} {x2},{y2}"
    return f'<path d="{path}" fill="none" stroke="#555" marker-end="url(#arrow)"/>'

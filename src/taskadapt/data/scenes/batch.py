"""Stack per-scene layouts into the tensors the ray caster and the label code consume.

Slots: boxes first (``0..Pb-1``), then round primitives (``Pb..Pb+Pq-1``), each list padded to the
largest count in the batch with far-away dummies that no ray inside a room can reach, so padding
never changes a sample's result (batching independence). ``table`` holds, per slot, what deferred
shading needs once the nearest slot of each pixel is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from taskadapt.data.scenes.classes import PRIMITIVE_CLASSES
from taskadapt.data.scenes.layout import Primitive, SceneLayout
from taskadapt.data.scenes.raycast import BoxSlot, QuadricSlot

#: rows of :attr:`SceneBatch.table`
TABLE_FIELDS = ("is_quad", "cx", "cz", "cos", "sin", "hx", "hz", "h", "s", "c", "cls", "local")
FIELD = {name: i for i, name in enumerate(TABLE_FIELDS)}
_FAR = 1.0e4  # dummy primitives sit here, far outside every room


def _box_row(p: Primitive | None) -> list[float]:
    if p is None:
        return [0.0, _FAR, _FAR, 1.0, 0.0, 0.1, 0.1, 0.1, 0.0, 0.0, -1.0, -1.0]
    return [
        0.0,
        p.x,
        p.z,
        math.cos(p.yaw),
        math.sin(p.yaw),
        p.half[0],
        p.half[1],
        p.height,
        0.0,
        0.0,
        float(PRIMITIVE_CLASSES[p.kind]),
        0.0,
    ]


def _quad_row(p: Primitive | None) -> list[float]:
    if p is None:  # a small sphere far away
        return [1.0, _FAR, _FAR, 1.0, 0.0, 0.1, 0.1, 0.2, 1.0, 0.1, -1.0, -1.0]
    r = p.half[0]
    if p.kind == "sphere":
        s, c = 1.0, r
    elif p.kind == "cylinder":
        s, c = 0.0, 0.0
    else:  # cone, apex at the top
        s, c = -((r / p.height) ** 2), p.height
    return [1.0, p.x, p.z, 1.0, 0.0, r, r, p.height, s, c, float(PRIMITIVE_CLASSES[p.kind]), 0.0]


def _quad_q(p: Primitive | None) -> float:
    if p is None:
        return 0.01
    return 0.0 if p.kind == "cone" else p.half[0] ** 2


@dataclass
class SceneBatch:
    """Tensors of B scenes; per-sample scalars are (B, 1) float32 so they broadcast over pixels."""

    B: int
    room: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # W, H, D
    origin: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    right: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    up: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    forward: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    boxes: list[BoxSlot]
    quadrics: list[QuadricSlot]
    table: torch.Tensor  # (len(TABLE_FIELDS), B * P) float32, column b * P + slot
    num_slots: int  # P
    rug: torch.Tensor  # (B, 4) x0, x1, z0, z1 (an empty rectangle when absent)
    paintings: torch.Tensor  # (B, MAX_PAINTINGS, 5) wall, u0, u1, y0, y1 (wall -1 when absent)
    cam_to_world: torch.Tensor  # (B, 4, 4)

    @classmethod
    def from_layouts(cls, layouts: list[SceneLayout], max_paintings: int) -> SceneBatch:
        B = len(layouts)

        def col(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64).float().view(B, 1)

        boxes_per = [[p for p in lay.primitives if p.kind == "box"] for lay in layouts]
        quads_per = [[p for p in lay.primitives if p.kind != "box"] for lay in layouts]
        nb = max((len(b) for b in boxes_per), default=0)
        nq = max((len(q) for q in quads_per), default=0)
        P = nb + nq
        rows = []  # rows[b][slot] -> table row
        for lay, bx, qd in zip(layouts, boxes_per, quads_per, strict=True):
            order = {id(p): i for i, p in enumerate(lay.primitives)}
            r = []
            for k in range(nb):
                p = bx[k] if k < len(bx) else None
                row = _box_row(p)
                row[-1] = float(order[id(p)]) if p is not None else -1.0
                r.append(row)
            for k in range(nq):
                p = qd[k] if k < len(qd) else None
                row = _quad_row(p)
                row[-1] = float(order[id(p)]) if p is not None else -1.0
                r.append(row)
            rows.append(r)
        full = torch.tensor(rows, dtype=torch.float64).view(B, P, len(TABLE_FIELDS))
        table = full.permute(2, 0, 1).reshape(len(TABLE_FIELDS), B * P).float().contiguous()

        def field(slot: int, name: str) -> torch.Tensor:
            return full[:, slot, FIELD[name]].float().view(B, 1)

        boxes = [
            BoxSlot(*(field(k, n) for n in ("cx", "cz", "cos", "sin", "hx", "hz", "h"))) for k in range(nb)
        ]
        quadrics = []
        for j in range(nq):
            qd_j = [q[j] if j < len(q) else None for q in quads_per]
            rcap = [p.half[0] ** 2 if p is not None and p.kind == "cylinder" else 0.0 for p in qd_j]
            k = nb + j
            quadrics.append(
                QuadricSlot(
                    cx=field(k, "cx"),
                    cz=field(k, "cz"),
                    s=field(k, "s"),
                    c=field(k, "c"),
                    q=col([_quad_q(p) for p in qd_j]),
                    ymax=field(k, "h"),
                    rcap2=col(rcap),
                    has_cap=any(v > 0 for v in rcap),
                )
            )
        cams = [lay.camera for lay in layouts]
        rug = torch.tensor(
            [list(lay.rug) if lay.rug is not None else [-1.0, -1.0, -1.0, -1.0] for lay in layouts],
            dtype=torch.float64,
        ).float()
        paint = torch.full((B, max_paintings, 5), -1.0, dtype=torch.float64)
        for b, lay in enumerate(layouts):
            for k, pt in enumerate(lay.paintings):
                paint[b, k] = torch.tensor([pt.wall, pt.u0, pt.u1, pt.y0, pt.y1], dtype=torch.float64)
        return cls(
            B=B,
            room=tuple(col([lay.room[i] for lay in layouts]) for i in range(3)),
            origin=tuple(col([c.position[i] for c in cams]) for i in range(3)),
            right=tuple(col([c.right[i] for c in cams]) for i in range(3)),
            up=tuple(col([c.up[i] for c in cams]) for i in range(3)),
            forward=tuple(col([c.forward[i] for c in cams]) for i in range(3)),
            boxes=boxes,
            quadrics=quadrics,
            table=table,
            num_slots=P,
            rug=rug,
            paintings=paint.float(),
            cam_to_world=torch.tensor([c.cam_to_world() for c in cams], dtype=torch.float64).float(),
        )

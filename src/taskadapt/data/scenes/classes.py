"""Semantic classes of the procedural scenes and the written label definitions.

The class list is part of the dataset contract: index ``i`` in ``semseg`` is ``CLASS_NAMES[i]``
(stored as ``i + 1`` in the segmentation PNGs, 0 = void, NYUD convention). Rug and painting are flat
decals: they change the class without changing depth or normals.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "floor",
    "wall",
    "ceiling",
    "rug",
    "painting",
    "box",
    "sphere",
    "cylinder",
    "cone",
)

FLOOR, WALL, CEILING, RUG, PAINTING, BOX, SPHERE, CYLINDER, CONE = range(len(CLASS_NAMES))

#: room-surface classes (materials 0..4 are these, by class index)
ROOM_CLASSES = (FLOOR, WALL, CEILING, RUG, PAINTING)
#: primitive kind name -> class index
PRIMITIVE_CLASSES = {"box": BOX, "sphere": SPHERE, "cylinder": CYLINDER, "cone": CONE}

#: relative depth jump that counts as a depth discontinuity between two different objects
EDGE_DEPTH_REL_THRESHOLD = 0.02

DEPTH_DEFINITION = (
    "z-depth in metres along the camera's optical axis (not the distance along the ray), as NYUD; "
    "> 0 on every pixel (closed room)"
)
NORMALS_FRAME = (
    "unit surface normals in the camera frame: x right, y up, z towards the camera "
    "(visible surfaces have n . ray_direction < 0)"
)
EDGE_RULE = (
    "for every pair of 4-neighbours (right and bottom) that is discontinuous -- the classes differ, or "
    f"the two pixels see different objects and their depths differ by more than "
    f"{EDGE_DEPTH_REL_THRESHOLD:g} x the smaller depth -- the nearer pixel of the pair (the left/top one "
    "on ties) is marked 1; lines are 1 px thick on the occluding side"
)
CAMERA_CONVENTION = (
    "intrinsics K (pixel coordinates: u = column, v = row, pixel centres at integers); camera frame x right, "
    "y up, z towards the viewer, so pixel (v, u) with depth d is X = (u - cx) d / fx, Y = -(v - cy) d / fy, "
    "Z = -d; cam_to_world maps camera to world coordinates (world y up, floor at y = 0)"
)

"""Held tools and the workbench, drawn as extra parts that take part in the depth sort."""

from __future__ import annotations

import numpy as np

from flashcli.figureworld.actions.base import Props
from flashcli.figureworld.camera import Camera
from flashcli.figureworld.figure import PART_INDEX, Part
from flashcli.figureworld.raster import (
    SCENE_OCCLUDER,
    Canvas,
    Layer,
    Paint,
    coverage_from_distance,
    draw_capsule,
    draw_disc,
)
from flashcli.figureworld.skeleton import JOINT_INDEX, LEFT, RIGHT, Body, Kinematics, Pose, bone_direction

WOOD = Paint((150.0, 100.0, 55.0), shading=0.25)
METAL = Paint((110.0, 112.0, 122.0), shading=0.35)
DARK = Paint((45.0, 45.0, 50.0), shading=0.3)
COPPER = Paint((190.0, 120.0, 70.0), shading=0.3)
RED = Paint((200.0, 40.0, 35.0), shading=0.3)
CARDBOARD = (196.0, 156.0, 104.0)
SPARK_RGB = (255.0, 246.0, 215.0)
BEAD_RGB = (255.0, 150.0, 60.0)

BENCH_HEIGHT = 0.45
BENCH_NEAR, BENCH_FAR = 0.34, 0.14  # bench top spans this far in front of the feet (body frame z)
BENCH_HALF_WIDTH = 0.32


def draw_polygon(
    canvas: Canvas, vertices: np.ndarray, colour: tuple[float, float, float], owner: int, figure: bool
) -> None:
    """A convex polygon (any winding), anti-aliased by the distance to its nearest edge line."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    box = canvas.box(lo[0], lo[1], hi[0], hi[1])
    if box is None:
        return
    centre = vertices.mean(axis=0)
    distance = None
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        edge = b - a
        length = float(np.hypot(edge[0], edge[1]))
        if length < 1e-6:
            continue
        normal = np.array([edge[1], -edge[0]]) / length
        if np.dot(centre - a, normal) > 0:  # make the normal point outwards
            normal = -normal
        d = (box.px - np.float32(a[0])) * np.float32(normal[0]) + (box.py - np.float32(a[1])) * np.float32(
            normal[1]
        )
        distance = d if distance is None else np.maximum(distance, d)
    if distance is None:
        return
    canvas.composite(
        box, coverage_from_distance(distance), np.asarray(colour, dtype=np.float32), owner, figure
    )


def _side_sign(side: str) -> float:
    return LEFT if side == "l" else RIGHT


def _tool_axes(kin: Kinematics, pose: Pose, props: Props) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grip point, tool axis (handle direction) and fist direction, in world space."""
    side = props.tool_hand
    sign = _side_sign(side)
    wrist, hand = kin.joints[JOINT_INDEX[f"{side}_wrist"]], kin.joints[JOINT_INDEX[f"{side}_hand"]]
    grip = wrist + (hand - wrist) * 0.85
    fist = hand - wrist
    fist = fist / max(float(np.linalg.norm(fist)), 1e-9)
    the_arm = pose.left_arm if side == "l" else pose.right_arm
    flex = the_arm.hand_flex + 0.5 * np.pi if props.tool_flex is None else props.tool_flex
    abduct = the_arm.hand_abduct if props.tool_abduct is None else props.tool_abduct
    axis = kin.torso_frame @ bone_direction(flex, abduct, sign)
    return grip, axis, fist


def tool_parts(
    canvas: Canvas, kin: Kinematics, pose: Pose, props: Props, body: Body, camera: Camera, hand_depth: float
) -> list[Part]:
    """The held tool (if any) as one part drawn just behind the gripping hand."""
    if props.tool is None:
        return []
    s = camera.scale
    owner = PART_INDEX["tool"]
    grip, axis, fist = _tool_axes(kin, pose, props)

    def px(point: np.ndarray) -> np.ndarray:
        return camera.project(point[None, :])[0][0]

    capsules: list[tuple[np.ndarray, np.ndarray, float, Paint]] = []
    glow: list[tuple[np.ndarray, float]] = []
    tool = props.tool
    if tool == "hammer":
        end = grip + axis * 0.17
        capsules.append((grip - axis * 0.03, end, 0.011, WOOD))
        capsules.append((end - fist * 0.04, end + fist * 0.05, 0.022, METAL))
    elif tool == "torch":
        end = grip + axis * 0.08
        nozzle = axis * 0.5 + fist * 0.85
        tip = end + nozzle / np.linalg.norm(nozzle) * 0.06
        capsules.append((grip - axis * 0.04, end, 0.015, DARK))
        capsules.append((end, tip, 0.008, COPPER))
        if props.spark > 0:
            glow.append((tip, 0.05 + 0.03 * props.spark))
    elif tool == "screwdriver":
        end = grip + axis * 0.05
        capsules.append((grip - axis * 0.04, end, 0.016, RED))
        capsules.append((end, end + axis * 0.09, 0.0055, METAL))
        # a dark groove along the handle that slides across it as the handle turns
        across = fist - axis * float(np.dot(fist, axis))
        across /= max(float(np.linalg.norm(across)), 1e-9)
        groove = across * 0.011 * np.sin(props.twist)
        capsules.append((grip - axis * 0.03 + groove, end - axis * 0.005 + groove, 0.004, DARK))
    elif tool == "saw":
        capsules.append((grip - axis * 0.03, grip + axis * 0.04, 0.016, WOOD))
        capsules.append((grip + axis * 0.05, grip + axis * 0.27, 0.03, METAL))
    elif tool == "cup":
        mug = Paint((236.0, 232.0, 220.0), shading=0.3)
        capsules.append((grip - np.array([0.0, 0.03, 0.0]), grip + np.array([0.0, 0.03, 0.0]), 0.026, mug))
    elif tool == "phone":
        capsules.append((grip - axis * 0.01, grip + axis * 0.07, 0.016, DARK))
    elif tool == "crate":
        capsules.append(
            (grip + fist * 0.03, grip + fist * 0.03, 0.035, Paint((60.0, 150.0, 90.0), shading=0.15))
        )
    elif tool == "rag":
        capsules.append(
            (
                grip + fist * 0.01 + axis * 0.02,
                grip + fist * 0.01 - axis * 0.02,
                0.03,
                Paint((235.0, 205.0, 60.0), shading=0.1),
            )
        )
    elif tool == "ball":
        capsules.append((grip + fist * 0.02, grip + fist * 0.02, 0.045, RED))
    elif tool == "box":
        left = (
            kin.joints[JOINT_INDEX["l_wrist"]]
            + (kin.joints[JOINT_INDEX["l_hand"]] - kin.joints[JOINT_INDEX["l_wrist"]]) * 0.8
        )
        right = (
            kin.joints[JOINT_INDEX["r_wrist"]]
            + (kin.joints[JOINT_INDEX["r_hand"]] - kin.joints[JOINT_INDEX["r_wrist"]]) * 0.8
        )
        centre3 = (left + right) * 0.5
        half_w = max(float(np.linalg.norm(px(left) - px(right))) * 0.5 - 0.01 * s, 0.06 * s)
        centre = px(centre3)
        half_h = 0.08 * s
        corners = (
            np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]]) + centre
        )
        box_depth = min(camera.project(left[None])[1][0], camera.project(right[None])[1][0]) - 0.01

        def draw_box() -> None:
            draw_polygon(canvas, corners, CARDBOARD, owner, True)
            tape = np.array(
                [[-half_w, -half_h], [half_w, -half_h], [half_w, -half_h * 0.7], [-half_w, -half_h * 0.7]]
            )
            draw_polygon(canvas, tape + centre, (170.0, 130.0, 85.0), owner, True)

        return [Part("tool", box_depth, draw_box)]
    else:
        raise ValueError(f"unknown tool {tool!r}")

    def draw() -> None:
        for a, b, r, paint in capsules:
            draw_capsule(canvas, px(a), px(b), r * s, r * s, paint, owner)
        for centre, radius in glow:
            draw_disc(canvas, px(centre), radius * s, SPARK_RGB, owner, True, glow=True)
            draw_disc(canvas, px(centre), max(0.012 * s, 0.8), (255.0, 255.0, 255.0), owner, True)

    return [Part("tool", hand_depth - 0.002, draw)]


def tool_tip(kin: Kinematics, pose: Pose, props: Props) -> np.ndarray | None:
    """World position of the working end of a torch or screwdriver (None for other tools)."""
    if props.tool not in ("torch", "screwdriver"):
        return None
    grip, axis, fist = _tool_axes(kin, pose, props)
    if props.tool == "screwdriver":
        return grip + axis * 0.14
    nozzle = axis * 0.5 + fist * 0.85
    return grip + axis * 0.08 + nozzle / np.linalg.norm(nozzle) * 0.06


def bench_parts(
    canvas: Canvas,
    kin: Kinematics,
    pose: Pose,
    props: Props,
    camera: Camera,
    layers: dict[tuple[object, ...], Layer | None],
) -> list[Part]:
    """A workbench in front of the figure, with what is being worked on lying on it.

    The bench does not move during a clip, so it is drawn once into a layer (kept in `layers`,
    one per camera and stage placement) and stamped onto each frame.
    """
    if not props.bench:
        return []
    origin = kin.stage_origin
    body_rot = kin.body_frame

    def world(x: float, y: float, z: float) -> np.ndarray:
        return origin + body_rot @ np.array([x, y, z])

    def px(*points: np.ndarray) -> np.ndarray:
        return camera.project(np.stack(points))[0]

    w, h = BENCH_HALF_WIDTH, BENCH_HEIGHT
    top = px(
        world(-w, h, BENCH_FAR), world(w, h, BENCH_FAR), world(w, h, BENCH_NEAR), world(-w, h, BENCH_NEAR)
    )
    front = px(
        world(-w, h, BENCH_NEAR),
        world(w, h, BENCH_NEAR),
        world(w, h - 0.04, BENCH_NEAR),
        world(-w, h - 0.04, BENCH_NEAR),
    )
    legs = [
        (world(x, h - 0.04, BENCH_NEAR - 0.02), world(x, 0.0, BENCH_NEAR - 0.02))
        for x in (-w + 0.03, w - 0.03)
    ]
    depth = float(camera.project(world(0.0, h, 0.13)[None])[1][0])
    s = camera.scale

    def on_top(x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        return px(world(x0, h, z0), world(x1, h, z0), world(x1, h, z1), world(x0, h, z1))

    def draw_static(canvas: Canvas) -> None:
        for a, b in legs:
            pa, pb = px(a, b)
            draw_capsule(canvas, pa, pb, 0.014 * s, 0.014 * s, WOOD, SCENE_OCCLUDER, figure=False)
        draw_polygon(canvas, top, (176.0, 128.0, 80.0), SCENE_OCCLUDER, False)
        draw_polygon(canvas, front, (120.0, 82.0, 48.0), SCENE_OCCLUDER, False)
        piece = props.workpiece
        if piece == "plate_seam":
            draw_polygon(canvas, on_top(-0.2, 0.2, 0.17, 0.31), (150.0, 155.0, 165.0), SCENE_OCCLUDER, False)
            seam = px(world(-0.18, h, 0.24), world(0.18, h, 0.24))
            draw_capsule(canvas, seam[0], seam[1], 0.006 * s, 0.006 * s, DARK, SCENE_OCCLUDER, figure=False)
        elif piece == "screw_plate":
            draw_polygon(canvas, on_top(-0.16, 0.16, 0.18, 0.3), (205.0, 170.0, 120.0), SCENE_OCCLUDER, False)
            for x in (-0.08, 0.0, 0.08):
                draw_disc(
                    canvas,
                    px(world(x, h, 0.24))[0],
                    max(0.011 * s, 0.8),
                    (90.0, 90.0, 95.0),
                    SCENE_OCCLUDER,
                    False,
                )
        elif piece == "keyboard":
            draw_polygon(canvas, on_top(-0.15, 0.15, 0.18, 0.28), (40.0, 42.0, 48.0), SCENE_OCCLUDER, False)
            for row in range(3):
                z = 0.2 + 0.03 * row
                key_row = px(world(-0.13, h + 0.003, z), world(0.13, h + 0.003, z))
                keys = Paint(
                    (200.0, 200.0, 205.0),
                    pattern="stripes",
                    second=(40.0, 42.0, 48.0),
                    period=max(0.022 * s, 2.0),
                )
                draw_capsule(
                    canvas, key_row[0], key_row[1], 0.006 * s, 0.006 * s, keys, SCENE_OCCLUDER, figure=False
                )
        elif piece == "board":
            draw_polygon(canvas, on_top(-0.3, 0.45, 0.19, 0.29), (214.0, 180.0, 130.0), SCENE_OCCLUDER, False)
        elif piece is not None:
            raise ValueError(f"unknown workpiece {piece!r}")

    key = (
        props.workpiece,
        camera.scale,
        camera.origin_x,
        camera.ground_y,
        *np.round(origin, 6),
        *np.round(body_rot[:, 0], 6),
    )
    if key not in layers:
        layer_canvas = Canvas(np.zeros((canvas.height, canvas.width, 3), dtype=np.float32), layer=True)
        draw_static(layer_canvas)
        layers[key] = layer_canvas.freeze_layer()
    layer = layers[key]

    def draw() -> None:
        if layer is not None:
            canvas.stamp(layer, SCENE_OCCLUDER)
        tip = tool_tip(kin, pose, props) if props.workpiece == "plate_seam" else None
        if tip is not None:
            # the fresh weld bead runs from where welding started to under the torch tip
            tip_x = float((body_rot.T @ (tip - origin))[0])
            start_x = min(max(props.seam_start, -0.18), 0.18)
            end_x = min(max(tip_x, -0.18), 0.18)
            bead_ends = px(world(start_x, h, 0.24), world(end_x, h, 0.24))
            bead = Paint(BEAD_RGB, shading=0.1)
            draw_capsule(
                canvas, bead_ends[0], bead_ends[1], 0.009 * s, 0.009 * s, bead, SCENE_OCCLUDER, False
            )

    parts = [Part("bench", depth, draw)]
    if props.tool is None and not props.held and props.object_x != 0.0:
        # a small crate resting on the bench (pick and place)
        corners = on_top(props.object_x - 0.04, props.object_x + 0.04, 0.2, 0.26)
        lift = np.array([0.0, 0.06 * s])
        block = np.concatenate([corners[:2], corners[:2][::-1] - lift])

        def draw_object() -> None:
            draw_polygon(canvas, block, (60.0, 150.0, 90.0), SCENE_OCCLUDER, False)

        parts.append(Part("object", depth + 0.001, draw_object))
    return parts

"""Drawing one posed figure: body parts as shaded capsules and ellipses, sorted back to front."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flashcli.figureworld.appearance import Appearance
from flashcli.figureworld.camera import Camera
from flashcli.figureworld.raster import (
    Canvas,
    Paint,
    draw_capsule,
    draw_capsule_union,
    draw_disc,
    ellipse_alpha,
)
from flashcli.figureworld.skeleton import JOINT_INDEX, JOINT_NAMES, Body, Kinematics

# Owner ids written into Canvas.owner, one per drawn part.
PART_NAMES: tuple[str, ...] = (
    "head",
    "hair_back",
    "neck",
    "torso",
    "hips",
    "l_upper_arm",
    "l_forearm",
    "l_hand",
    "r_upper_arm",
    "r_forearm",
    "r_hand",
    "l_thigh",
    "l_shin",
    "l_foot",
    "r_thigh",
    "r_shin",
    "r_foot",
    "tool",
)
PART_INDEX: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

# Which drawn parts a joint may legitimately sit on (used to decide joint visibility).
JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "head": ("head", "hair_back"),
    "neck": ("neck", "torso", "head", "hair_back"),
    "pelvis": ("torso", "hips"),
}
for _side in ("l", "r"):
    JOINT_PARTS[f"{_side}_shoulder"] = ("torso", f"{_side}_upper_arm")
    JOINT_PARTS[f"{_side}_elbow"] = (f"{_side}_upper_arm", f"{_side}_forearm")
    JOINT_PARTS[f"{_side}_wrist"] = (f"{_side}_forearm", f"{_side}_hand", "tool")
    JOINT_PARTS[f"{_side}_hand"] = (f"{_side}_hand", "tool")
    JOINT_PARTS[f"{_side}_hip"] = ("hips", "torso", f"{_side}_thigh")
    JOINT_PARTS[f"{_side}_knee"] = (f"{_side}_thigh", f"{_side}_shin")
    JOINT_PARTS[f"{_side}_ankle"] = (f"{_side}_shin", f"{_side}_foot")
    JOINT_PARTS[f"{_side}_foot"] = (f"{_side}_foot",)
JOINT_OWNER_TABLE = np.zeros((len(JOINT_NAMES), len(PART_NAMES)), dtype=bool)
for _joint, _parts in JOINT_PARTS.items():
    for _part in _parts:
        JOINT_OWNER_TABLE[JOINT_INDEX[_joint], PART_INDEX[_part]] = True


@dataclass(frozen=True)
class FigurePaints:
    """The paints of one figure, made once per clip."""

    skin: Paint
    top: Paint
    bottom: Paint
    shoes: Paint
    hair: Paint
    patch_rgb: tuple[float, float, float]

    @staticmethod
    def from_appearance(appearance: Appearance, scale: float, rng: np.random.Generator) -> FigurePaints:
        period = max(appearance.pattern_period * scale, 2.5)
        pattern = appearance.top_pattern if appearance.top_pattern != "patch" else "solid"
        tile = rng.uniform(-1.0, 1.0, size=(8, 8)).astype(np.float32) if pattern == "noise" else None
        return FigurePaints(
            skin=Paint(appearance.skin_rgb(), shading=0.25),
            top=Paint(
                appearance.top_rgb(),
                pattern=pattern,
                second=appearance.top_second_rgb(),
                period=period,
                noise_tile=tile,
            ),
            bottom=Paint(appearance.bottom_rgb(), shading=0.3),
            shoes=Paint(appearance.shoe_rgb(), shading=0.2),
            hair=Paint(appearance.hair_rgb(), shading=0.2),
            patch_rgb=appearance.top_second_rgb(),
        )


@dataclass
class Part:
    name: str
    depth: float
    draw: Callable[[], None]


def _capsule_part(
    canvas: Canvas,
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    ra: float,
    rb: float,
    paint: Paint,
    depth: float,
) -> Part:
    def draw() -> None:
        draw_capsule(canvas, a, b, ra, rb, paint, PART_INDEX[name])

    return Part(name, depth, draw)


def figure_parts(
    canvas: Canvas,
    kin: Kinematics,
    body: Body,
    appearance: Appearance,
    paints: FigurePaints,
    camera: Camera,
) -> tuple[list[Part], np.ndarray, np.ndarray]:
    """The figure's parts (unsorted) plus projected joints (J, 2) and joint depths (J,)."""
    pts, depth = camera.project(kin.joints)
    s = camera.scale
    j = JOINT_INDEX
    parts: list[Part] = []

    def p(name: str) -> np.ndarray:
        return pts[j[name]]

    def d(first: str, second: str | None = None) -> float:
        if second is None:
            return float(depth[j[first]])
        return 0.5 * float(depth[j[first]] + depth[j[second]])

    # Torso: a tapered spine capsule with shoulder and hip capsules for the silhouette. Its apparent
    # width blends the chest's front width and side depth by how far the torso is turned.
    left_axis = kin.torso_frame[:, 0]
    turned = abs(float(left_axis[2]))
    facing = float(np.sqrt(max(0.0, 1.0 - turned * turned)))
    chest_r = float(np.hypot(body.chest_radius * facing, body.chest_depth * turned)) * s
    waist_r = float(np.hypot(body.waist_radius * facing, body.chest_depth * 0.9 * turned)) * s
    neck, pelvis = p("neck"), p("pelvis")
    chest = neck + (pelvis - neck) * 0.22
    torso_depth = d("neck", "pelvis")

    def draw_torso() -> None:
        capsules = [
            (chest, pelvis + (neck - pelvis) * 0.08, chest_r, waist_r),
            (p("l_shoulder"), p("r_shoulder"), body.shoulder_radius * s, body.shoulder_radius * s),
        ]
        draw_capsule_union(canvas, capsules, paints.top, PART_INDEX["torso"])
        if appearance.top_pattern == "patch" and kin.torso_frame[2, 2] > 0.25:
            # a round badge on the chest, on the figure's left, visible from the front only
            badge = chest + (p("l_shoulder") - p("r_shoulder")) * 0.22 + (pelvis - neck) * 0.1
            draw_disc(
                canvas,
                badge,
                max(body.chest_radius * 0.32 * s, 1.2),
                paints.patch_rgb,
                PART_INDEX["torso"],
                True,
            )

    parts.append(Part("torso", torso_depth, draw_torso))
    hip_r = body.hip_radius * s
    parts.append(
        _capsule_part(
            canvas, "hips", p("l_hip"), p("r_hip"), hip_r, hip_r, paints.bottom, torso_depth - 0.004
        )
    )
    neck_top = neck + (p("head") - neck) * 0.5
    parts.append(
        _capsule_part(
            canvas,
            "neck",
            neck,
            neck_top,
            body.neck_radius * s,
            body.neck_radius * s,
            paints.skin,
            torso_depth + 0.001,
        )
    )

    # Head with hair; hair covers the crown and, as the face turns away, the back of the head.
    head_c = p("head")
    head_up = head_c - neck
    angle = float(np.arctan2(head_up[0], -head_up[1]))
    forward = kin.head_frame[:, 0:3] @ np.array([0.0, 0.0, 1.0])
    face_x = float(forward[0])  # screen-x component of where the face points
    face_z = float(forward[2] * np.cos(camera.elevation) + forward[1] * np.sin(camera.elevation))
    rx, ry = body.head_radius * 0.86 * s, body.head_radius * 1.02 * s
    head_depth = d("head") + 0.02

    def draw_head() -> None:
        reach = max(rx, ry)
        box = canvas.box(head_c[0] - reach, head_c[1] - reach, head_c[0] + reach, head_c[1] + reach)
        if box is None:
            return
        alpha, local_x, local_up = ellipse_alpha(box, head_c, rx, ry, angle)
        shade = 1.0 - 0.22 * np.clip(local_x * local_x + local_up * local_up, 0.0, 1.0)
        colour = shade[..., None] * np.asarray(paints.skin.base, dtype=np.float32)
        if appearance.hair_style != "bald":
            hairline = 0.25 - 1.6 * max(0.0, -face_z)
            hair = local_up - local_x * np.float32(face_x * 0.9) > np.float32(hairline)
            hair_rgb = shade[..., None] * np.asarray(paints.hair.base, dtype=np.float32)
            colour = np.where(hair[..., None], hair_rgb, colour)
        canvas.composite(box, alpha, colour, PART_INDEX["head"])
        if face_z > 0.35:
            # two eyes, shifted towards where the face points
            for side in (-1.0, 1.0):
                offset_x = (side * 0.36 + face_x * 0.45) * rx
                eye = (
                    head_c
                    + np.array([offset_x * np.cos(angle), offset_x * np.sin(angle)])
                    + head_up / np.linalg.norm(head_up) * (-0.05 * ry)
                )
                if abs(side * 0.36 + face_x * 0.45) < 0.8:
                    draw_disc(canvas, eye, max(0.09 * rx, 0.45), (35.0, 30.0, 30.0), PART_INDEX["head"], True)

    parts.append(Part("head", head_depth, draw_head))
    if appearance.hair_style == "long":
        # long hair hangs from the back of the head straight down (gravity, not the neck's line);
        # it is behind the body when the face is towards the camera and over the back otherwise
        head_3d = kin.joints[j["head"]]
        back = -forward
        hang = head_3d + back * body.head_radius * 0.6 + np.array([0.0, -body.head_radius * 2.2, 0.0])
        hair_end = camera.project(hang[None, :])[0][0]
        hair_depth = torso_depth - 0.05 if face_z > 0 else head_depth + 0.01
        parts.append(
            _capsule_part(
                canvas, "hair_back", head_c, hair_end, rx * 0.95, rx * 0.75, paints.hair, hair_depth
            )
        )

    # Limbs. Sleeves and shorts decide which paint the lower limbs get.
    fore_paint = paints.top if appearance.long_sleeves else paints.skin
    shin_paint = paints.skin if appearance.shorts else paints.bottom
    for side in ("l", "r"):
        sh, el, wr, ha = p(f"{side}_shoulder"), p(f"{side}_elbow"), p(f"{side}_wrist"), p(f"{side}_hand")
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_upper_arm",
                sh,
                el,
                body.upper_arm_radius * s,
                body.forearm_radius * 1.08 * s,
                paints.top,
                d(f"{side}_shoulder", f"{side}_elbow") + 0.006,
            )
        )
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_forearm",
                el,
                wr,
                body.forearm_radius * s,
                body.forearm_radius * 0.8 * s,
                fore_paint,
                d(f"{side}_elbow", f"{side}_wrist") + 0.008,
            )
        )
        hand_end = wr + (ha - wr) * 1.2  # the hand joint is mid-hand; fingers reach past it
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_hand",
                wr + (ha - wr) * 0.15,
                hand_end,
                body.hand_radius * 0.9 * s,
                body.hand_radius * s,
                paints.skin,
                d(f"{side}_wrist", f"{side}_hand") + 0.01,
            )
        )
        hip, kn, an, ft = p(f"{side}_hip"), p(f"{side}_knee"), p(f"{side}_ankle"), p(f"{side}_foot")
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_thigh",
                hip,
                kn,
                body.thigh_radius * s,
                body.shin_radius * 1.1 * s,
                paints.bottom,
                d(f"{side}_hip", f"{side}_knee") - 0.02,
            )
        )
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_shin",
                kn,
                an,
                body.shin_radius * s,
                body.shin_radius * 0.72 * s,
                shin_paint,
                d(f"{side}_knee", f"{side}_ankle") - 0.019,
            )
        )
        parts.append(
            _capsule_part(
                canvas,
                f"{side}_foot",
                an,
                ft,
                body.foot_radius * s,
                body.foot_radius * 0.9 * s,
                paints.shoes,
                d(f"{side}_ankle", f"{side}_foot") - 0.018,
            )
        )
    return parts, pts, depth


def joint_visibility(canvas: Canvas, pts: np.ndarray) -> np.ndarray:
    """A joint is visible when it is inside the frame and a part it belongs to owns its pixel."""
    xi = np.floor(pts[:, 0]).astype(np.int64)
    yi = np.floor(pts[:, 1]).astype(np.int64)
    inside = (xi >= 0) & (xi < canvas.width) & (yi >= 0) & (yi < canvas.height)
    owner = np.full(len(pts), -1, dtype=np.int64)
    owner[inside] = canvas.owner[yi[inside], xi[inside]]
    owned = owner >= 0
    visible = np.zeros(len(pts), dtype=bool)
    rows = np.nonzero(owned)[0]
    visible[rows] = JOINT_OWNER_TABLE[rows, owner[rows]]
    return visible

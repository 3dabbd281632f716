"""Anti-aliased drawing with signed distances, in numpy, restricted to each shape's bounding box.

Coverage of a pixel is clip(0.5 - d, 0, 1) where d is the signed distance (in pixels) from the
pixel centre to the shape outline: one pass, no supersampling, and soft edges for free. Shapes
are composited back to front (painter's order) onto a float32 canvas in 0..255 units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCENE_OCCLUDER = -2  # owner id of scene props drawn in front of the figure
NO_OWNER = -1

LIGHT_DIRECTION = np.array([-0.6, -0.8], dtype=np.float32)  # light comes from the upper left


@dataclass(frozen=True)
class Paint:
    """How to colour a body part or prop: a base colour, an optional pattern and shading."""

    base: tuple[float, float, float]
    pattern: str = "solid"  # solid | stripes | checks | noise
    second: tuple[float, float, float] = (0.0, 0.0, 0.0)
    period: float = 6.0  # pattern period in pixels
    noise_tile: np.ndarray | None = None  # (N, N) float32 in [-1, 1] for the noise pattern
    shading: float = 0.3  # how much darker the edge of a rounded part is than its centre


@dataclass
class Box:
    """Pixel box [y0:y1, x0:x1] of a shape and the pixel-centre coordinates inside it."""

    y0: int
    y1: int
    x0: int
    x1: int
    px: np.ndarray  # (1, w) x of pixel centres
    py: np.ndarray  # (h, 1) y of pixel centres


@dataclass(frozen=True)
class Layer:
    """Shapes drawn once and stamped onto many frames (a static prop)."""

    y0: int
    y1: int
    x0: int
    x1: int
    alpha: np.ndarray  # (h, w)
    premultiplied: np.ndarray  # (h, w, 3) colour times alpha
    solid: np.ndarray  # (h, w) alpha > 0.5


class Canvas:
    """A frame being drawn: colour and which part owns each pixel (for the mask and visibility)."""

    def __init__(self, background: np.ndarray, layer: bool = False) -> None:
        """layer=True starts a transparent layer: coverage then accumulates as alpha ('over')."""
        if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.float32:
            raise ValueError("background must be a float32 (H, W, 3) array in 0..255")
        self.layer = layer
        self.rgb = background.copy()
        self.height, self.width = background.shape[:2]
        self.coverage = np.zeros((self.height, self.width), dtype=np.float32)
        self.owner = np.full((self.height, self.width), NO_OWNER, dtype=np.int16)
        self._xs = np.arange(self.width, dtype=np.float32)[None, :] + 0.5
        self._ys = np.arange(self.height, dtype=np.float32)[:, None] + 0.5

    def box(self, lo_x: float, lo_y: float, hi_x: float, hi_y: float) -> Box | None:
        """The pixel box covering [lo, hi] (plus one pixel of anti-aliasing), or None if off-canvas."""
        x0 = max(int(np.floor(lo_x)) - 1, 0)
        y0 = max(int(np.floor(lo_y)) - 1, 0)
        x1 = min(int(np.ceil(hi_x)) + 2, self.width)
        y1 = min(int(np.ceil(hi_y)) + 2, self.height)
        if x0 >= x1 or y0 >= y1:
            return None
        return Box(y0, y1, x0, x1, self._xs[:, x0:x1], self._ys[y0:y1, :])

    def composite(
        self, box: Box, alpha: np.ndarray, colour: np.ndarray, owner: int, figure: bool = True
    ) -> None:
        """Blend colour over the canvas with per-pixel alpha and record which part owns each pixel.

        The figure mask is read from ownership (pixels whose top part is a figure part), so only a
        layer keeps a coverage (alpha) channel. `figure` says whether the shape belongs to the
        figure; scene props pass figure=False with a negative owner id.
        """
        region = self.rgb[box.y0 : box.y1, box.x0 : box.x1]
        change = colour - region
        change *= alpha[..., None]
        region += change
        if self.layer:
            coverage = self.coverage[box.y0 : box.y1, box.x0 : box.x1]
            coverage *= 1.0 - alpha
            coverage += alpha
        if figure and owner < 0:
            raise ValueError("figure parts need a non-negative owner id")
        np.copyto(self.owner[box.y0 : box.y1, box.x0 : box.x1], owner, where=alpha > 0.5, casting="unsafe")

    def freeze_layer(self) -> Layer | None:
        """This layer (drawn over black) cropped to what was drawn, ready to stamp onto frames."""
        if not self.layer:
            raise ValueError("freeze_layer needs a canvas made with layer=True")
        rows = np.nonzero(self.coverage.max(axis=1) > 0)[0]
        cols = np.nonzero(self.coverage.max(axis=0) > 0)[0]
        if len(rows) == 0:
            return None
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        alpha = self.coverage[y0:y1, x0:x1].copy()
        return Layer(y0, y1, x0, x1, alpha, self.rgb[y0:y1, x0:x1].copy(), alpha > 0.5)

    def stamp(self, layer: Layer, owner: int) -> None:
        """Composite a frozen layer (premultiplied colour) over this canvas."""
        region = self.rgb[layer.y0 : layer.y1, layer.x0 : layer.x1]
        region *= (1.0 - layer.alpha)[..., None]
        region += layer.premultiplied
        np.copyto(
            self.owner[layer.y0 : layer.y1, layer.x0 : layer.x1], owner, where=layer.solid, casting="unsafe"
        )

    def figure_mask(self) -> np.ndarray:
        """bool (H, W): pixels whose topmost part (drawn at least half opaque) is the figure's."""
        return self.owner >= 0

    def reset(self, background: np.ndarray) -> None:
        """Start a new frame on the same buffers (saves allocating them per frame)."""
        np.copyto(self.rgb, background)
        if self.layer:
            self.coverage.fill(0.0)
        self.owner.fill(NO_OWNER)

    def to_uint8(self) -> np.ndarray:
        out = np.empty(self.rgb.shape, dtype=np.uint8)
        self.write_uint8(out)
        return out

    def write_uint8(self, out: np.ndarray) -> None:
        """Round the frame into a uint8 (H, W, 3) array; the canvas is spent afterwards."""
        # colours are never negative (shading stays above zero), so only the top needs clamping
        np.minimum(self.rgb, 254.5, out=self.rgb)
        self.rgb += 0.5
        out[...] = self.rgb  # the float -> uint8 assignment truncates, which rounds after +0.5


def clip01(x: np.ndarray) -> np.ndarray:
    """In-place clamp to [0, 1]; np.clip's Python wrapper costs more than the work on small boxes."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def coverage_from_distance(distance: np.ndarray) -> np.ndarray:
    return clip01(0.5 - distance)


@dataclass
class SegmentField:
    """Distance-related fields of a (tapered) capsule over a box."""

    distance: np.ndarray  # signed distance to the outline, pixels
    t: np.ndarray  # position along the bone, 0 at its start, 1 at its end
    length: float  # bone length, pixels
    across: np.ndarray  # signed distance across the bone, in units of its mean radius (-1..1 inside)
    light: float  # how much the across direction faces the light (-1..1)

    @property
    def along(self) -> np.ndarray:
        """Distance along the bone from its start, pixels (only patterns need it)."""
        return self.t * self.length


def capsule_field(box: Box, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> SegmentField:
    """Signed distance to a capsule from a (radius ra) to b (radius rb), radius linear along it."""
    # Python floats keep float32 arrays float32 (numpy 2 promotion) and cost less than np.float32()
    ax, ay = float(a[0]), float(a[1])
    bx, by = float(b[0]) - ax, float(b[1]) - ay
    length_sq = bx * bx + by * by
    dx = box.px - ax
    dy = box.py - ay
    if length_sq < 1e-9:
        t = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), dtype=np.float32)
        across = dx + 0 * dy
        length = 1.0
        light = 0.0
    else:
        t = clip01(dx * (bx / length_sq) + dy * (by / length_sq))
        length = float(np.sqrt(length_sq))
        # across is only used for shading and patterns, so the mean radius is close enough
        scale = 1.0 / (length * max(0.5 * (ra + rb), 0.5))
        across = dx * (by * scale) - dy * (bx * scale)
        light = (by * float(LIGHT_DIRECTION[0]) - bx * float(LIGHT_DIRECTION[1])) / length
    ex = dx - t * bx
    ey = dy - t * by
    distance = np.hypot(ex, ey)
    if ra == rb:
        distance -= ra
    else:
        distance -= t * (rb - ra)
        distance -= ra
    return SegmentField(distance, t, length, across, light)


def capsule_box(canvas: Canvas, a: np.ndarray, b: np.ndarray, radius: float) -> Box | None:
    return canvas.box(
        min(a[0], b[0]) - radius, min(a[1], b[1]) - radius, max(a[0], b[0]) + radius, max(a[1], b[1]) + radius
    )


def paint_colour(
    paint: Paint, field: SegmentField, across: np.ndarray, light: float, across_pixels: float
) -> np.ndarray:
    """Per-pixel colour (h, w, 3) of a painted part given bone-local coordinates.

    across runs -1..1 over the part's width; across_pixels is how many pixels one unit of it spans
    (so checks come out square whatever the part's width).
    """
    # 1 - shading * across^2 + light * across; across stays within about +-1.2 wherever a part has
    # coverage, so one floor on the result is all the clamping needed
    shade = across * np.float32(-paint.shading)
    shade += np.float32(0.12 * light)
    shade *= across
    shade += 1.0
    np.maximum(shade, 0.4, out=shade)  # never darker than this, and never negative
    base = np.asarray(paint.base, dtype=np.float32)
    if paint.pattern == "solid":
        return shade[..., None] * base
    second = np.asarray(paint.second, dtype=np.float32)
    along = field.along
    omega = 2.0 * np.pi / paint.period
    if paint.pattern == "stripes":
        mix = clip01(np.sin(along * omega) * 1.25 + 0.5)
    elif paint.pattern == "checks":
        # across is in radius units; scale it so squares are roughly square on a typical limb
        mix = clip01(np.sin(along * omega) * np.sin(across * (across_pixels * omega)) * 2.0 + 0.5)
    elif paint.pattern == "noise":
        if paint.noise_tile is None:
            raise ValueError("the noise pattern needs a noise_tile")
        n = paint.noise_tile.shape[0]
        cell = max(paint.period / 4.0, 1.0)
        iu = (along / np.float32(cell)).astype(np.int32) % n
        iv = ((across + 1.0) * np.float32(2.0)).astype(np.int32) % n
        mix = paint.noise_tile[iv, iu] * 0.5 + 0.5
    else:
        raise ValueError(f"unknown paint pattern {paint.pattern!r}")
    colour = base + mix[..., None] * (second - base)
    return shade[..., None] * colour


def draw_capsule(
    canvas: Canvas,
    a: np.ndarray,
    b: np.ndarray,
    ra: float,
    rb: float,
    paint: Paint,
    owner: int,
    figure: bool = True,
) -> None:
    """A filled, shaded, anti-aliased tapered capsule from a to b."""
    box = capsule_box(canvas, a, b, max(ra, rb))
    if box is None:
        return
    f = capsule_field(box, a, b, ra, rb)
    alpha = coverage_from_distance(f.distance)
    colour = paint_colour(paint, f, f.across, f.light, max(0.5 * (ra + rb), 0.5))
    canvas.composite(box, alpha, colour, owner, figure)


def draw_capsule_union(
    canvas: Canvas,
    capsules: list[tuple[np.ndarray, np.ndarray, float, float]],
    paint: Paint,
    owner: int,
) -> SegmentField | None:
    """Several capsules drawn as one shape (e.g. a torso); pattern coordinates follow the first one."""
    lo = np.min([np.minimum(a, b) - max(ra, rb) for a, b, ra, rb in capsules], axis=0)
    hi = np.max([np.maximum(a, b) + max(ra, rb) for a, b, ra, rb in capsules], axis=0)
    box = canvas.box(lo[0], lo[1], hi[0], hi[1])
    if box is None:
        return None
    main = capsule_field(box, *capsules[0])
    distance = main.distance
    for capsule in capsules[1:]:
        distance = np.minimum(distance, capsule_field(box, *capsule).distance)
    alpha = coverage_from_distance(distance)
    # Shade across the whole union, not just the first capsule: rescale `across` so the union's
    # widest reach from the first capsule's axis is +-1.
    a0, b0, ra0, rb0 = capsules[0]
    axis = np.asarray(b0 - a0, dtype=np.float64)
    normal = np.array([axis[1], -axis[0]]) / max(float(np.hypot(axis[0], axis[1])), 1e-9)
    reach = max(ra0, rb0)
    for a, b, ra, rb in capsules[1:]:
        for point, radius in ((a, ra), (b, rb)):
            reach = max(reach, abs(float(np.dot(np.asarray(point) - a0, normal))) + radius)
    across = main.across * (max(0.5 * (ra0 + rb0), 0.5) / reach)
    canvas.composite(box, alpha, paint_colour(paint, main, across, main.light, reach), owner)
    return main


def ellipse_alpha(box: Box, centre: np.ndarray, rx: float, ry: float, angle: float) -> tuple[np.ndarray, ...]:
    """Coverage of a rotated ellipse plus its local coordinates (x along its width, y along its height).

    angle is the screen direction of the ellipse's 'up' axis measured from screen-up, in radians.
    """
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx = box.px - np.float32(centre[0])
    dy = box.py - np.float32(centre[1])
    local_x = dx * c + dy * s
    local_up = dx * s - dy * c
    norm = np.sqrt((local_x / np.float32(rx)) ** 2 + (local_up / np.float32(ry)) ** 2)
    distance = (norm - 1.0) * np.float32(min(rx, ry))
    return coverage_from_distance(distance), local_x / np.float32(rx), local_up / np.float32(ry)


def draw_disc(
    canvas: Canvas,
    centre: np.ndarray,
    radius: float,
    colour: tuple[float, float, float],
    owner: int,
    figure: bool,
    glow: bool = False,
) -> None:
    """A flat disc; with glow the edge fades out over the whole radius (sparks, lights)."""
    box = canvas.box(centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
    if box is None:
        return
    dx = box.px - np.float32(centre[0])
    dy = box.py - np.float32(centre[1])
    distance = np.sqrt(dx * dx + dy * dy)
    if glow:
        alpha = np.clip(1.0 - distance / np.float32(max(radius, 0.5)), 0.0, 1.0) ** 2
    else:
        alpha = coverage_from_distance(distance - np.float32(radius))
    canvas.composite(box, alpha, np.asarray(colour, dtype=np.float32), owner, figure)

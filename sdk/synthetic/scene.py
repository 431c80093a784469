"""Sampling of the per-seed scene: segments, field of view, camera path, polyps, instrument.

Everything here is numbers, no pixels. Geometry is in "world" units where the field-of-view
radius is 1, so one seed describes the same colon at every output resolution; the renderer
scales it to pixels. A video is a chain of segments (one stretch of colon each, 150-300
frames); each segment is sampled from its own generator, so frame ``i`` can be rendered
without rendering the frames before it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SEGMENT_FRAMES = (150, 300)     # inclusive range of a segment's length in frames
ZOOM_RANGE = (0.9, 1.6)         # >1 magnifies: the view shows a world disc of radius 1/zoom
MAX_EXCURSION = 0.65            # how far the view centre wanders from the texture centre
TEXTURE_HALF = 1.9              # half side of the world square the texture covers

POLYP_COLOURS = ("pink", "red", "pale", "orange")   # colour words, relative to the mucosa
SIZE_RADII = {"small": (0.045, 0.07), "medium": (0.08, 0.13), "large": (0.15, 0.24)}
MUCOSA_BASES = (                # BGR albedo of the mucosa: pink, salmon, red, pale pink, peach
    (52, 76, 185), (46, 70, 180), (44, 60, 172), (60, 84, 185), (50, 82, 188),
)


@dataclass
class PolypSpec:
    """One polyp on the colon wall, in world units."""

    x: float
    y: float
    radius: float               # head radius along the long axis
    elongation: float           # short axis = radius / elongation
    orientation: float          # radians
    kind: str                   # "sessile" or "pedunculated"
    colour: str                 # one of POLYP_COLOURS
    height: float               # dome height relative to the radius
    lobes: tuple                # (amplitude, phase) per boundary harmonic 2..5
    stalk_angle: float = 0.0    # pedunculated: direction from the base to the head
    stalk_length: float = 0.0   # pedunculated: base-to-head distance in head radii
    occluded_at: float | None = None  # fold edge offset from the centre, in radii; None = free
    light: tuple = (0.0, 0.0)   # small tilt of the light, so domes are not all lit the same


@dataclass
class InstrumentSpec:
    """An instrument pushed through the working channel during part of a segment."""

    kind: str                   # "forceps" or "snare"
    entry_angle: float          # where on the field-of-view rim it enters (radians, y down)
    heading: float              # direction it points, radians
    width: float                # shaft width at the rim, world units (radius 1 = fov)
    depth: float                # how far the tip reaches at full insertion
    t_in: int                   # segment-local frame it starts to appear
    t_out: int                  # segment-local frame it is gone again

    def insertion(self, t: float) -> float:
        """Fraction of full insertion at segment-local time ``t`` (0 = not visible)."""
        ramp = 25.0             # frames to push in or pull out: slow enough to track
        if t <= self.t_in or t >= self.t_out:
            return 0.0
        up = min(1.0, (t - self.t_in) / ramp, (self.t_out - t) / ramp)
        wobble = 0.06 * math.sin(t / 11.0 + self.entry_angle)
        return float(np.clip(up * (0.94 + wobble), 0.0, 1.0))


@dataclass
class CameraPath:
    """Smooth pan, zoom and roll of the scope over one segment (sums of slow sinusoids)."""

    amps: np.ndarray            # (K, 2) amplitude of each centre component
    freqs: np.ndarray           # (K,) radians per frame
    phases: np.ndarray          # (K, 2)
    offset: np.ndarray          # (2,) mean centre
    zoom_terms: np.ndarray      # (3, 3) amplitude, frequency, phase of log-zoom components
    zoom_mid: float
    roll_terms: np.ndarray      # (2, 3)
    roll0: float

    def at(self, t: float) -> tuple[float, float, float, float]:
        """(centre x, centre y, zoom, roll in radians) at segment-local time ``t``."""
        arg = self.freqs[:, None] * t + self.phases
        cx, cy = self.offset + (self.amps * np.sin(arg)).sum(axis=0)
        a, f, p = self.zoom_terms.T
        lz = self.zoom_mid + float((a * np.sin(f * t + p)).sum())
        lo, hi = math.log(ZOOM_RANGE[0]), math.log(ZOOM_RANGE[1])
        # tanh squashing keeps the zoom inside its range without a visible kink at the limits
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        zoom = math.exp(mid + half * math.tanh((lz - mid) / half))
        a, f, p = self.roll_terms.T
        roll = self.roll0 + float((a * np.sin(f * t + p)).sum())
        return float(cx), float(cy), zoom, roll


@dataclass
class Segment:
    """One stretch of colon: its look, its objects, its camera path and its overlays."""

    index: int
    start: int                  # global frame index of the first frame
    length: int
    seed: int                   # generator seed for textures (derived, deterministic)
    lumen: tuple                # (x, y) world position of the lumen centre
    tube: tuple                 # (a2, p2, a3, p3) harmonics that make the lumen non-circular
    fold_spacing: float
    fold_strength: float
    depth_scale: float          # brightness falls off as (rho / depth_scale) ** gamma
    gamma: float
    mucosa: tuple               # BGR albedo
    vessel_density: float
    camera: CameraPath
    polyps: list = field(default_factory=list)
    instrument: InstrumentSpec | None = None
    fov_shape: str = "circle"   # "circle" or "octagon"
    fov_shift: float = 0.0      # 0 = centred, 1 = pushed right to leave room for text
    fov_size: float = 0.56      # field-of-view radius as a fraction of the frame height
    text_overlay: str | None = None   # None, "patient" or "timer"
    text_colour: tuple = (235, 235, 235)
    box_artifact: bool = False
    clock: int = 0              # seconds since midnight at the segment start (OSD clock)
    date: str = "01/01/2020"
    exposure: float = 1.0


def _camera(rng: np.random.Generator, length: int) -> CameraPath:
    k = 3
    periods = rng.uniform(140, 700, size=k)
    amps = rng.normal(0, 1, size=(k, 2)) * (0.28 * np.sqrt(periods / 400.0))[:, None]
    phases = rng.uniform(0, 2 * np.pi, size=(k, 2))
    offset = rng.uniform(-0.2, 0.2, size=2)
    cam = CameraPath(amps, 2 * np.pi / periods, phases, offset,
                     np.column_stack([rng.uniform(0.05, 0.22, 3), 2 * np.pi / rng.uniform(90, 500, 3),
                                      rng.uniform(0, 2 * np.pi, 3)]),
                     float(rng.uniform(math.log(1.0), math.log(1.35))),
                     np.column_stack([rng.uniform(0.05, 0.3, 2), 2 * np.pi / rng.uniform(200, 900, 2),
                                      rng.uniform(0, 2 * np.pi, 2)]),
                     float(rng.uniform(-np.pi, np.pi)))
    # scale the wander down so the view never leaves the texture (no unlabelled mirror images)
    ts = np.arange(0, length + 1, 2)
    arg = cam.freqs[None, :, None] * ts[:, None, None] + cam.phases[None]
    wander = np.hypot(*(cam.amps[None] * np.sin(arg)).sum(axis=1).T).max()
    room = MAX_EXCURSION - float(np.hypot(*cam.offset))
    if wander > room:
        cam.amps *= room / wander
    return cam


def _place_polyp(rng, seg_len, cam, lumen, placed, focus_t):
    size = rng.choice(["small", "medium", "large"], p=[0.35, 0.4, 0.25])
    radius = float(rng.uniform(*SIZE_RADII[size]))
    for _ in range(40):
        t = focus_t + rng.normal(0, 25) if rng.random() < 0.7 else rng.uniform(0, seg_len)
        cx, cy, zoom, _ = cam.at(float(np.clip(t, 0, seg_len - 1)))
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.55) / zoom
        x, y = cx + dist * math.cos(ang), cy + dist * math.sin(ang)
        rx, ry = x - lumen[0], y - lumen[1]
        rho = math.hypot(rx, ry)
        if rho < 0.45 + radius:  # not deep in the dark lumen: push it out onto the wall
            scale = (0.45 + radius) / max(rho, 1e-6)
            x, y = lumen[0] + rx * scale, lumen[1] + ry * scale
        reach = radius * 3.2     # head, stalk and shadow must stay inside the texture
        if max(abs(x), abs(y)) > TEXTURE_HALF - reach:
            continue
        if all(math.hypot(x - p.x, y - p.y) > 1.3 * (radius + p.radius) + 0.05 for p in placed):
            break
    else:
        return None
    kind = "pedunculated" if rng.random() < 0.3 else "sessile"
    colour = str(rng.choice(POLYP_COLOURS, p=[0.4, 0.25, 0.2, 0.15]))
    # a gently irregular outline: mostly oval (harmonics 2-3), only a hint of lobes (4-5)
    lobes = tuple((float(rng.uniform(0, amp)), float(rng.uniform(0, 6.3))) for amp in (0.06, 0.05, 0.02, 0.015))
    spec = PolypSpec(x, y, radius, float(rng.uniform(1.0, 1.35)), float(rng.uniform(0, np.pi)),
                     kind, colour, float(rng.uniform(0.45, 0.9) if kind == "sessile" else 1.0), lobes,
                     light=(float(rng.normal(0, 0.25)), float(rng.normal(0, 0.25))))
    if kind == "pedunculated":
        # the head hangs from its stalk towards the camera, i.e. away from the lumen
        out = math.atan2(y - lumen[1], x - lumen[0])
        spec.stalk_angle = out + float(rng.normal(0, 0.6))
        spec.stalk_length = float(rng.uniform(0.6, 1.2))
    if rng.random() < 0.3:
        spec.occluded_at = float(rng.uniform(-0.1, 0.5))
    return spec


def sample_segment(seed: int, index: int, start: int, length: int) -> Segment:
    """The segment ``index`` of the video of ``seed`` (pure: same arguments, same segment)."""
    rng = np.random.default_rng([seed, index, 0x5E6])
    cam = _camera(rng, length)
    lumen_r = rng.uniform(0.0, 1.25) if rng.random() < 0.8 else rng.uniform(1.3, 2.2)
    lumen_a = rng.uniform(0, 2 * np.pi)
    lumen = (float(lumen_r * math.cos(lumen_a)), float(lumen_r * math.sin(lumen_a)))
    seg = Segment(
        index=index, start=start, length=length, seed=int(rng.integers(2**31)),
        lumen=lumen,
        tube=(float(rng.uniform(0, 0.18)), float(rng.uniform(0, np.pi)),
              float(rng.uniform(0, 0.22)), float(rng.uniform(0, np.pi))),
        fold_spacing=float(rng.uniform(0.45, 0.85)), fold_strength=float(rng.uniform(0.6, 1.0)),
        depth_scale=float(rng.uniform(0.8, 1.2)), gamma=float(rng.uniform(1.4, 2.0)),
        mucosa=tuple(int(c) for c in np.clip(
            np.array(MUCOSA_BASES[rng.integers(len(MUCOSA_BASES))]) + rng.normal(0, 5, 3), 25, 200)),
        vessel_density=float(rng.uniform(0.3, 1.0)), camera=cam,
    )
    n = int(rng.choice([0, 1, 2, 3], p=[0.15, 0.3, 0.3, 0.25]))
    focus = rng.uniform(0.2, 0.8) * length
    for _ in range(n):
        p = _place_polyp(rng, length, cam, lumen, seg.polyps, focus)
        if p is not None:
            seg.polyps.append(p)
    if rng.random() < 0.3:
        t_in = int(rng.integers(0, max(1, length - 80)))
        entry = float(rng.uniform(0.15, 0.85) * np.pi if rng.random() < 0.8 else rng.uniform(0, 2 * np.pi))
        seg.instrument = InstrumentSpec(
            kind="forceps" if rng.random() < 0.55 else "snare", entry_angle=entry,
            heading=entry + np.pi + float(rng.normal(0, 0.25)),
            width=float(rng.uniform(0.18, 0.3)), depth=float(rng.uniform(0.45, 0.9)),
            t_in=t_in, t_out=int(min(length + 40, t_in + rng.integers(70, 220))))
    seg.fov_shape = "octagon" if rng.random() < 0.4 else "circle"
    # some processors crop the round image hard at the top and bottom, others show it whole
    seg.fov_size = float(rng.uniform(0.52, 0.68))
    r = rng.random()
    if r < 0.4:
        seg.text_overlay = "patient"
    elif r < 0.55:
        seg.text_overlay = "timer"
    seg.fov_shift = 1.0 if (seg.text_overlay or rng.random() < 0.5) else float(rng.uniform(0, 0.3))
    seg.text_colour = (235, 235, 235) if rng.random() < 0.75 else (120, 230, 120)
    seg.box_artifact = bool(rng.random() < 0.3)
    seg.clock = int(rng.integers(8 * 3600, 17 * 3600))
    seg.date = f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(2015, 2024)}"
    seg.exposure = float(rng.uniform(0.95, 1.2))
    return seg


class Timeline:
    """Maps a global frame index to (segment index, segment start, segment length)."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng([seed, 0x71E])
        self._starts = [0]

    def locate(self, i: int) -> tuple[int, int, int]:
        """Segment holding frame ``i``: (index, start frame, length)."""
        if i < 0:
            raise ValueError(f"frame index must be >= 0, got {i}")
        while self._starts[-1] <= i:   # lengths are drawn in order, so any i is reproducible
            self._starts.append(self._starts[-1] + int(self._rng.integers(SEGMENT_FRAMES[0],
                                                                        SEGMENT_FRAMES[1] + 1)))
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return k, self._starts[k], self._starts[k + 1] - self._starts[k]

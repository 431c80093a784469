"""The colon as a 3D tube with haustral folds, lit and seen from the scope tip.

The camera sits near the tube's axis looking down it, with its light at the lens. In
cylinder coordinates (angle ``theta``, depth ``z`` along the axis, wall radius
``R(theta, z)``) a wall point is seen at image distance ``rho = R / z`` from the vanishing
point (the lumen centre), in direction ``theta``. So each image ray in direction ``theta`` is
a 1D problem: walking outwards in depth, a point is visible only if no nearer point reached a
smaller ``rho``, which a running minimum finds. A fold (a ring where ``R`` dips) therefore
hides the wall just behind it and shows a sharp silhouette against the darker, deeper wall,
as in real colonoscopy. Lambert shading with light at the camera has the closed form

    cos = R (R - z dR/dz) / (sqrt(R^2 + (dR/dtheta)^2 + R^2 (dR/dz)^2) * |P|)

so faces of folds turned towards the scope light up and the far wall, grazed by the light,
dims on top of the inverse-square falloff. Everything is computed on a polar grid (cheap:
about a million samples) and resampled to the texture's Cartesian grid.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .scene import TEXTURE_HALF, Segment

# polar grid sizes at full detail (a ~2000 px texture); smaller textures use fewer samples
N_THETA = 1440                  # angular samples: silhouettes of folds are traced per angle
N_Z = 1100                      # depth samples along each ray, log-spaced
N_RHO = 1100                    # image-radius samples of the polar picture, log-spaced
Z_MIN, Z_MAX = 0.16, 30.0       # nearest and farthest wall depth considered (tube radii)
RHO_LO = 0.02                   # image radius of the polar grid's inner edge


def flat_light(seg: Segment, rho):
    """Light on a plain straight tube at image radius ``rho`` (no folds): depth falloff only."""
    z = 1.0 / np.maximum(rho, 1e-3)
    return _light(seg, 1.0 / np.sqrt(1 + z * z), 1 + z * z)


def _light(seg: Segment, cos, dist2):
    # inverse-power falloff, normalised so the straight wall at depth ``depth_scale`` reads 1
    d0 = 1.0 + seg.depth_scale ** 2
    norm = d0 ** (seg.gamma / 2) * math.sqrt(d0)
    return np.minimum(cos * norm / dist2 ** (seg.gamma / 2), 1.7)


def _wall(seg: Segment, rng, theta, z):
    """Wall radius R (N_THETA, N_Z): cross-section harmonics, a bend, and haustral folds."""
    a2, p2, a3, p3 = seg.tube
    R = 1.0 + a2 * np.cos(2 * theta - p2) + a3 * np.cos(3 * theta - p3 + 0.12 * z)
    # the colon bends: one side of the wall closes in with depth, pushing the lumen aside
    bend, side = rng.uniform(0.0, 0.06), rng.uniform(0, 2 * np.pi)
    R = R * (1.0 - bend * np.minimum(z, 8.0) * (1 + np.cos(theta - side)) / 2)
    # gentle bulges and dips on the near wall (it is never a smooth pipe); they fade with
    # depth, where they would only stack up into rings
    fade = np.exp(-z / 2.0)
    for _ in range(8):
        j, w = int(rng.integers(1, 7)), rng.uniform(2.0, 9.0)
        R = R + rng.normal(0, 0.012) * np.cos(j * theta + rng.uniform(0, 6.3)) \
            * np.cos(w * z + rng.uniform(0, 6.3)) * fade
    zk = rng.uniform(0.25, 0.6)
    while zk < 14.0:
        # a fold: a semilunar ridge, partial around the circumference, wavy along it
        wob = sum(rng.normal(0, 0.05 * zk ** 0.5 / j) * np.cos(j * theta + rng.uniform(0, 6.3))
                  for j in (1, 2, 3))
        env = 0.5 + sum(rng.normal(0, 0.5) * np.cos(j * theta + rng.uniform(0, 6.3)) for j in (1, 2))
        # deep folds are more often broken arcs: a full ring at every depth reads as an onion
        env = np.clip(env * 1.8 - 0.15 * zk, 0, 1) * seg.fold_strength
        _add_fold(R, z, zk, wob, env, rng.uniform(0.05, 0.11) * (1 + 0.15 * zk), rng.uniform(0.12, 0.3))
        zk += rng.uniform(0.55, 0.55 + seg.fold_spacing) * (1 + 0.22 * zk)
    for p in seg.polyps:
        if p.occluded_at is None:
            continue
        # a fold just in front of this polyp, placed so its rim crosses the polyp at
        # occluded_at radii from its centre: the nearer part of the polyp hides behind it
        rx, ry = p.x - seg.lumen[0], p.y - seg.lumen[1]
        rho_p, th_p = math.hypot(rx, ry), math.atan2(ry, rx) % (2 * np.pi)
        rho_rim = rho_p + p.occluded_at * p.radius
        a = int(round(th_p / (2 * np.pi) * len(theta))) % len(theta)
        j = min(z.shape[1] - 1, int(np.searchsorted(z[0], 1.0 / rho_p)))
        height = 0.3
        z_f = (R[a, j] - height * 0.97) / rho_rim
        dth = np.angle(np.exp(1j * (theta - th_p)))
        half = 2.5 * p.radius / rho_p + 0.25
        env = np.clip((half + 0.4 - np.abs(dth)) / 0.8, 0, 1)
        env = env * env * (3 - 2 * env)            # taper the ends: no angular kinks
        _add_fold(R, z, z_f, 0.0, env, 0.05 + 0.05 * z_f, height)
    return np.maximum(R, 0.15)


def _add_fold(R, z, zk, wob, env, width, height):
    lo, hi = np.searchsorted(z[0], [zk - 4 * width - 0.3, zk + 4 * width + 0.3])
    zz = z[:, lo:hi]
    R[:, lo:hi] -= height * env * np.exp(-(((zz - zk - wob) / width) ** 2))


def render_polar(seg: Segment, rng, rho_hi: float, detail: float = 1.0):
    """Light, sheen, glint likelihood and log depth of the visible wall on a polar grid.

    Returns four (n_theta, n_rho) float32 arrays; rows are angles, columns are image radii
    log-spaced from RHO_LO to ``rho_hi``. ``detail`` (0..1] scales the grid with the texture.
    """
    n_theta, n_z, n_rho = (max(300, int(n * detail)) for n in (N_THETA, N_Z, N_RHO))
    theta = np.linspace(0, 2 * np.pi, n_theta, endpoint=False, dtype=np.float32)[:, None]
    z = np.exp(np.linspace(math.log(Z_MIN), math.log(Z_MAX), n_z, dtype=np.float32))[None, :]
    R = _wall(seg, rng, theta, z).astype(np.float32)
    R_z = np.gradient(R, z[0], axis=1)
    R_t = (np.roll(R, -1, axis=0) - np.roll(R, 1, axis=0)) * (n_theta / (4 * np.pi))
    seen = np.minimum.accumulate(R / z, axis=1)   # nearest wall already at or inside rho
    rho = np.exp(np.linspace(math.log(RHO_LO), math.log(rho_hi), n_rho, dtype=np.float32))
    idx = np.empty((n_theta, n_rho), np.intp)
    for a in range(n_theta):
        idx[a] = np.searchsorted(-seen[a], -rho)
    void = idx >= n_z                              # past the deepest wall we model: darkness
    np.minimum(idx, n_z - 1, out=idx)
    zv = z[0][idx]
    Rv = np.take_along_axis(R, idx, axis=1)
    Rzv = np.take_along_axis(R_z, idx, axis=1)
    Rtv = np.take_along_axis(R_t, idx, axis=1)
    dist2 = Rv * Rv + zv * zv
    cos = Rv * (Rv - zv * Rzv) / (np.sqrt(Rv * Rv + Rtv * Rtv + (Rv * Rzv) ** 2) * np.sqrt(dist2))
    cos = np.clip(cos, 0.2, 1.0)   # rims seen edge-on: keep them from going pitch black
    light = _light(seg, cos, dist2) * ~void
    # wet mucosa: a broad sheen where the surface faces the lens squarely, strongest close by
    near = np.clip(light, 0, 1.2)
    sheen = 0.2 * cos ** 60 * near
    # glints (tiny mirror images of the light) sit on curved, lens-facing wet surfaces
    crest = np.clip((cos - 0.75) / 0.25, 0, 1) ** 2 * np.clip(np.abs(Rzv) * 3, 0.15, 1) * near
    # a little blur across angles turns the per-angle steps of silhouettes into soft edges
    return [cv2.GaussianBlur(a.astype(np.float32), (1, 5), sigmaX=0, sigmaY=1.2)
            for a in (light, sheen, crest, np.log(zv))]


def tube_layers(seg: Segment, rng, axis: np.ndarray):
    """Resample the polar render onto the square grid with world coordinates ``axis``.

    Returns (light, sheen, crest, log_depth, theta) as float32 (n, n) arrays, n = len(axis);
    theta is the angle around the lumen centre, for looking up wall texture.
    """
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * TEXTURE_HALF - np.array(seg.lumen)
    rho_hi = float(np.hypot(corners[:, 0], corners[:, 1]).max()) * 1.01
    size = len(axis)
    polar = render_polar(seg, rng, rho_hi, detail=min(1.0, size / 1000))
    n_theta, n_rho = polar[0].shape
    dx = np.ascontiguousarray(np.broadcast_to(axis[None, :] - seg.lumen[0], (size, size)), np.float32)
    dy = np.ascontiguousarray(np.broadcast_to(axis[:, None] - seg.lumen[1], (size, size)), np.float32)
    rho, theta = cv2.cartToPolar(dx, dy)
    del dx, dy
    map_x = theta * np.float32(n_theta / (2 * np.pi))
    np.maximum(rho, RHO_LO, out=rho)
    cv2.log(rho, rho)
    map_y = (rho - math.log(RHO_LO)) * np.float32((n_rho - 1) / math.log(rho_hi / RHO_LO))
    del rho
    # remap reads rows as y and columns as x: our polar image has angle on rows, so swap
    out = [cv2.remap(np.ascontiguousarray(layer.T), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_WRAP) for layer in polar]
    return (*out, theta)

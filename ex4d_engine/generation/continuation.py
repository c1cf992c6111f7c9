"""Background surfaces continued behind the occluders in front of them (the draft preview's far side).

At a depth edge, the farther side is a surface that runs on behind the nearer one. Each such surface
is continued along its own slope: walking away from the edge into the occluder, the disparity
(1 / depth, linear in the image on a plane) keeps the gradient it had just before the edge, for as
long as the continued surface stays behind what the source saw there. The walk is done in the four
image directions, so a box standing on a floor in front of a wall gets two continuations: the floor
(from its left and right, the floor's own depth at every row) and the wall (from above, the wall's
depth). All are kept; the output view's z-buffer shows the nearest, which is how surfaces that meet
behind an occluder occlude each other (the floor in front of the wall up to where they meet).

Colour: a continued sample takes the colour the source shows *at that depth* nearby
(:class:`DepthBinnedColour`: a push-pull per depth band), so the floor behind a box gets the floor's
local colour and the wall behind it the wall's, never the box's. On top of that it carries on the
texture its edge shows, as far as that texture runs on unchanged in the continuation's direction
(:func:`_carried_texture`: a wall's vertical stripes continue down behind the box; a chequer seen
from the side fades to the local colour within a few pixels).
"""

from __future__ import annotations

import numpy as np

from .fill import push_pull

#: A sample counts as "behind" another when it is this much farther (relative); as in :mod:`.layers`.
FARTHER = 0.08
#: Pixels before an edge over which the far side's slope is measured.
SLOPE_RUN = 8
#: A continuation ends when it would be more than this many times farther than its edge (a floor
#: running into the horizon: beyond that the surface above it takes over).
MAX_RECEDE = 4.0


def continue_far_sides(disparity: np.ndarray, max_length: int, residual: np.ndarray | None = None) -> list:
    """Four continuations (from the left, right, top, bottom), each ((H, W) disparity, (H, W) bool valid).

    ``valid`` marks the pixels where a far side continued up to ``max_length`` pixels from its edge
    lies behind the source's own surface there (by :data:`FARTHER`), in one unbroken run from the edge.

    With ``residual`` ((H, W, 3) float32: the source's colour minus its local mean at its own depth,
    i.e. its texture), each continuation also carries the texture it had at its edge
    (:func:`_carried_texture`) and its expected squared error: ((H, W, 3) texture, (H, W) error) are
    appended to each tuple.
    """
    disparity = np.asarray(disparity, np.float32)
    views = (
        (lambda a: a, lambda a: a),
        (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
        (lambda a: a.T, lambda a: a.T),
        (lambda a: a.T[:, ::-1], lambda a: a[:, ::-1].T),
    )
    out = []
    for forward, back in views:
        cont, valid, anchor, slope_ok = _continue_rightwards(np.ascontiguousarray(forward(disparity)), max_length)
        found = (np.ascontiguousarray(back(cont)), np.ascontiguousarray(back(valid)))
        if residual is not None:
            view = np.ascontiguousarray(np.stack([forward(residual[..., k]) for k in range(3)], axis=-1))
            texture, error = _carried_texture(view, anchor, slope_ok)
            found += (np.ascontiguousarray(np.stack([back(texture[..., k]) for k in range(3)], axis=-1)),
                      np.ascontiguousarray(back(error)))
        out.append(found)
    return out


#: Pixels just before an edge whose texture a continuation carries on (the edge pixel itself, often a
#: blend of both sides, is skipped).
EDGE_RUN = 4
#: Pixels before an edge over which the texture's variance and change are measured: several of its
#: features (a few pixels of a chequer square say nothing about how often its colour changes).
STATS_RUN = 32


def _carried_texture(residual: np.ndarray, anchor: np.ndarray, smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The texture a rightwards continuation carries, and its expected squared error (summed over channels).

    Texture that does not change along the continuation's direction (a wall's vertical stripes seen
    from above, a trunk's bark from below) runs on behind the occluder; texture that changes does
    not. Measured just before the edge: ``v``, the texture's variance there, and ``g``, the mean
    squared change from one pixel to the next along the direction. Carrying the edge's texture over
    ``n`` pixels errs by about ``n g`` (a random walk), guessing no texture by ``v``; the two guesses
    are combined by their errors (weight ``v / (v + n g)``), which is also what decides between
    continuations that meet (:func:`blend_continuations`). Where the :data:`STATS_RUN` pixels before
    the edge cross another edge (``smooth`` False) nothing is carried.
    """
    h, w, _ = residual.shape
    cols = np.arange(w)
    rows = np.arange(h)[:, None]
    k = EDGE_RUN
    zero = np.zeros((h, 1, 3), np.float32)
    total = np.concatenate([zero, np.cumsum(residual, axis=1, dtype=np.float64)], axis=1)
    total2 = np.concatenate([zero[..., 0], np.cumsum((residual ** 2).sum(-1), axis=1, dtype=np.float64)], axis=1)
    step2 = np.zeros((h, w), np.float64)
    step2[:, 1:] = (np.diff(residual, axis=1) ** 2).sum(-1)
    steps = np.concatenate([zero[..., 0], np.cumsum(step2, axis=1)], axis=1)
    start = np.maximum(anchor, 0)
    lo, hi = np.maximum(start - k, 0), start  # the run [anchor - k, anchor - 1]
    count = np.maximum(hi - lo, 1)[..., None]
    edge = (total[rows, hi] - total[rows, lo]) / count
    # the statistics over a longer run
    lo = np.maximum(start - STATS_RUN, 0)
    variance = (total2[rows, hi] - total2[rows, lo]) / np.maximum(hi - lo, 1)
    change = (steps[rows, hi] - steps[rows, lo + 1]) / np.maximum(hi - lo - 1, 1)
    distance = np.maximum(cols - anchor, 1).astype(np.float64)
    ok = (anchor >= STATS_RUN) & smooth[rows, start]
    drift = distance * change + 1e-3
    weight = np.where(ok, variance / (variance + drift), 0.0)
    error = np.where(ok, variance * drift / (variance + drift), variance) + 1e-3
    return (edge * weight[..., None]).astype(np.float32), error.astype(np.float32)


def blend_continuations(depth: list[np.ndarray], valid: list[np.ndarray], texture: list[np.ndarray],
                        error: list[np.ndarray]) -> list[np.ndarray]:
    """Each continuation's texture replaced by the error-weighted mean of all that reach the same pixel
    at (nearly) the same depth: the wall behind a box seen from above and from its side is one surface."""
    near = np.min([np.where(v, d, np.inf) for d, v in zip(depth, valid)], axis=0)
    same = [v & (d < (1.0 + FARTHER) * near) for d, v in zip(depth, valid)]
    weights = [np.where(s, 1.0 / e, 0.0) for s, e in zip(same, error)]
    total = np.maximum(np.sum(weights, axis=0), 1e-12)[..., None]
    mixed = np.sum([t * wgt[..., None] for t, wgt in zip(texture, weights)], axis=0) / total
    return [np.where(s[..., None], mixed, t) for s, t in zip(same, texture)]


def _continue_rightwards(disparity: np.ndarray, max_length: int) -> tuple[np.ndarray, ...]:
    """:func:`continue_far_sides` for one direction: edges whose right neighbour is nearer, continued rightwards.

    Returns the continued disparity, ``valid``, the column of each pixel's edge (``anchor``, -1: none)
    and whether the :data:`STATS_RUN` pixels before each pixel are free of depth edges."""
    h, w = disparity.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    rows = np.arange(h)[:, None]
    step = np.abs(np.diff(disparity, axis=1)) > FARTHER * np.minimum(disparity[:, 1:], disparity[:, :-1])
    edges_so_far = np.zeros((h, w), np.int32)
    edges_so_far[:, 1:] = np.cumsum(step, axis=1)
    near_next = np.zeros((h, w), bool)
    near_next[:, :-1] = step & (disparity[:, 1:] > disparity[:, :-1])
    # the far side's slope just before its edge (0 where that run crosses another edge: too short to tell)
    k = min(SLOPE_RUN, w - 1)
    slope = np.zeros((h, w), np.float32)
    if k > 0:
        smooth = edges_so_far[:, k:] == edges_so_far[:, :-k]
        slope[:, k:] = np.where(smooth, (disparity[:, k:] - disparity[:, :-k]) / k, 0.0)
    # no depth edge over the STATS_RUN pixels before (where the texture is measured)
    smooth = np.zeros((h, w), bool)
    smooth[:, STATS_RUN:] = edges_so_far[:, STATS_RUN:] == edges_so_far[:, :-STATS_RUN]
    anchor = np.maximum.accumulate(np.where(near_next, cols, -1), axis=1)
    start = np.maximum(anchor, 0)
    edge_disparity = disparity[rows, start]
    distance = (cols - anchor).astype(np.float32)
    cont = edge_disparity + distance * slope[rows, start]
    valid = ((anchor >= 0) & (distance <= max_length) & (cont < disparity / (1.0 + FARTHER))
             & (cont > edge_disparity / MAX_RECEDE))
    # one unbroken run from the edge: the continuation ends where the source's surface comes out from behind
    last_break = np.maximum.accumulate(np.where(valid, -1, cols), axis=1)
    valid &= last_break == anchor
    return cont.astype(np.float32), valid, anchor, smooth


class DepthBinnedColour:
    """Colour that the source shows near a pixel *at a given depth*: a push-pull per depth band.

    ``depth`` (H, W) > 0 and ``colour`` (H, W, 3) of the plate; the bands are equal steps of log-depth
    over its range, one per :data:`FARTHER` (at most ``max_bands``; soft: each pixel counts in the two
    bands around its depth). ``sources`` (H, W) bool: the pixels whose colour may be used (default
    all); leave out the occluders, whose depth may fall in the same band as the surface continued
    behind them. Computed at ``max_side`` pixels at most (the result is smooth anyway).
    """

    def __init__(self, depth: np.ndarray, colour: np.ndarray, sources: np.ndarray | None = None,
                 max_bands: int = 32, max_side: int = 256):
        import cv2

        h, w = depth.shape
        self.scale = min(1.0, max_side / max(h, w))
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        log_depth = np.log(np.asarray(depth, np.float32))
        self.low = float(log_depth.min())
        span = max(float(log_depth.max()) - self.low, 1e-3)
        # one band per "same surface" depth step (FARTHER), fewer over a very deep range
        bands = int(np.clip(np.ceil(span / np.log1p(FARTHER)) + 1, 2, max_bands))
        self.step = span / (bands - 1)
        self.bands = bands
        colour = np.asarray(colour, np.float32)
        position = (log_depth - self.low) / self.step
        self.fills = np.empty((bands, size[1], size[0], 3), np.float32)
        for b in range(bands):
            weight = np.clip(1.0 - np.abs(position - b), 0.0, 1.0).astype(np.float32)
            if sources is not None:
                weight *= sources
            premult = cv2.resize(colour * weight[..., None], size, interpolation=cv2.INTER_AREA)
            weight_small = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
            values = premult / np.maximum(weight_small, 1e-6)[..., None]
            if (weight_small > 0).any():
                self.fills[b] = push_pull(values, np.minimum(weight_small * 2.0, 1.0))
            else:
                self.fills[b] = colour.reshape(-1, 3).mean(axis=0)

    def __call__(self, rows: np.ndarray, cols: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(N, 3) float32 colour at pixels (rows, cols) for samples at ``depth`` (N,)."""
        r = np.clip((rows * self.scale).astype(np.int64), 0, self.fills.shape[1] - 1)
        c = np.clip((cols * self.scale).astype(np.int64), 0, self.fills.shape[2] - 1)
        position = np.clip((np.log(depth) - self.low) / self.step, 0, self.bands - 1)
        below = np.minimum(position.astype(np.int64), self.bands - 2) if self.bands > 1 else np.zeros_like(r)
        above = np.minimum(below + 1, self.bands - 1)
        t = (position - below)[:, None].astype(np.float32)
        return (1.0 - t) * self.fills[below, r, c] + t * self.fills[above, r, c]


#: The most a rounded silhouette's back is mirrored inwards, as a fraction of the image's long side (a
#: bound on the work: the walk stops earlier, where the front stops receding).
LIMB_FRACTION = 0.125


def limb_backs(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hidden back of rounded objects just inside their silhouettes: (rows, cols, back depth).

    A smooth convex surface (a ball, a head, a trunk) recedes ever faster towards its silhouette and
    turns there; its unseen back starts where its front ends, as the mirror image of the front about
    the silhouette's depth. A new view sees a sliver of that back beside the silhouette, which is the
    object, not the background behind it. Only silhouettes that curve like that get a back: the
    front must recede towards a depth edge, faster and faster (so a flat card or a box's flat face,
    which recede at most at a constant rate, get none), over at least 3 pixels. The back is mirrored
    for as long as the front keeps receding towards the silhouette without a step.
    """
    depth = np.asarray(depth, np.float32)
    views = (
        (lambda a: a, lambda r, c, h, w: (r, c)),
        (lambda a: a[:, ::-1], lambda r, c, h, w: (r, w - 1 - c)),
        (lambda a: a.T, lambda r, c, h, w: (c, r)),
        (lambda a: a.T[:, ::-1], lambda r, c, h, w: (h - 1 - c, r)),
    )
    found = []
    h, w = depth.shape
    walk = max(3, round(LIMB_FRACTION * max(h, w)))
    for forward, back in views:
        rows, cols, back_depth = _limbs_facing_right(np.ascontiguousarray(forward(depth)), walk)
        r, c = back(rows, cols, h, w)
        found.append((r, c, back_depth))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _limbs_facing_right(depth: np.ndarray, walk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`limb_backs` for silhouettes whose right neighbour is the far side."""
    h, w = depth.shape
    if w < 5:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    # silhouette pixels (from column 3 on: the curvature test looks 3 pixels in): the right neighbour is clearly farther
    edge_r, edge_c = np.nonzero(depth[:, 3:-1] * (1.0 + FARTHER) < depth[:, 4:])
    edge_c = edge_c + 3
    limb = depth[edge_r, edge_c]
    first = limb - depth[edge_r, edge_c - 1]  # recession over the last pixel
    second = (depth[edge_r, edge_c - 1] - depth[edge_r, edge_c - 3]) / 2.0  # ... and over the two before
    rounded = (first > 0.004 * limb) & (second > 0) & (first > 1.5 * second)
    edge_r, edge_c, limb = edge_r[rounded], edge_c[rounded], limb[rounded]
    rows, cols, backs = [], [], []
    alive = np.ones(len(edge_r), bool)
    for n in range(1, walk):  # the silhouette pixel itself is its own back
        c = edge_c - n
        # keep walking in while the front keeps coming nearer, without a step
        front, outer = depth[edge_r, np.maximum(c, 0)], depth[edge_r, c + 1]
        alive &= (c >= 0) & (front < outer) & (front * (1.0 + FARTHER) > outer)
        if not alive.any():
            break
        front = depth[edge_r[alive], c[alive]]
        rows.append(edge_r[alive])
        cols.append(c[alive])
        backs.append(2.0 * limb[alive] - front)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(backs).astype(np.float32)

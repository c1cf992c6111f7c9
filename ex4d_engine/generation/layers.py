"""The draft preview's background layer: what lies behind and around what the source frames show.

Every DW-mesh of a shot lives in the same world (the source camera's frame), so re-projecting the
mesh of frame j into output view i and keeping only what lies *behind* frame i's surface is the same
as choosing, per source pixel, frame j's sample wherever it is farther than frame i's. We make that
choice once for the whole shot, in source pixels:

1. **plate** -- per source pixel, the farthest sample over all frames: where a moving object left,
   the background it uncovered is taken (gathered from the other frames, nothing invented);
2. **behind** -- the far side of every depth edge extended behind the near side (layered-depth style):
   each far surface continued along its own slope (:mod:`.continuation`: the floor behind a box stays
   floor, the wall behind it wall; the output view's z-buffer decides where they meet), coloured
   from what the source shows at that depth plus the texture its edge shows, where that runs on;
   where no surface continues, a push-pull fill from the locally farthest pixels only, so
   foreground is never averaged in;
3. **margin** -- the plate extended beyond the image border (a push-pull fill from all of it).

The three are one static point cloud with colours. Each output view splats it with a z-buffer
(:func:`splat`); because the cloud is the same for every frame, a static background is filled the
same way in every frame instead of shimmering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .base import SceneGeometry
from .continuation import DepthBinnedColour, blend_continuations, continue_far_sides, limb_backs
from .fill import push_pull

#: A sample counts as "behind" another when it is this much farther (relative).
FARTHER = 0.08
#: The far-side window, as a fraction of the long side: an occluder narrower than about twice this is
#: seen through from both sides; wider ones are extended from their border inwards.
FAR_WINDOW_FRACTION = 0.25
#: The margin beyond the image border, as a fraction of the long side.
MARGIN_FRACTION = 0.2
#: Invented colour fades from the nearest known colour to the shot's mean colour over this distance
#: (fraction of the long side): far from anything seen, the mean is the least wrong guess.
FADE_FRACTION = 0.08
#: Texture is what a blur of this width (fraction of the long side) takes out of the colour.
TEXTURE_FRACTION = 1 / 32
#: Index bits in the z-buffer key (depth bits above them): 2**23 points at most.
_INDEX_BITS = 23


@dataclass
class BackgroundLayer:
    """A static coloured point cloud in world coordinates: (3, N) float32 points (x, y, z rows: one
    contiguous array per axis is 20x faster to transform than an (N, 3) matmul), (N, 3) uint8 colours.

    ``mean_colour`` (3,) float32: the plate's mean colour, what invented colour fades to.
    """

    points: np.ndarray
    colours: np.ndarray
    mean_colour: np.ndarray
    plate_colour: Optional[np.ndarray] = None  # (h, w, 3): the first h*w points are its pixels, row-major

    def __len__(self) -> int:
        return int(self.points.shape[1])


def farthest_plate(depth: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the depth and colour of the frame that sees farthest: (h, w) float32, (h, w, 3) uint8."""
    pick = depth.argmax(axis=0)
    plate_depth = np.take_along_axis(depth, pick[None], axis=0)[0]
    plate_colour = np.take_along_axis(frames, pick[None, ..., None], axis=0)[0]
    return plate_depth.astype(np.float32), plate_colour


def build_background_layer(geometry: SceneGeometry) -> BackgroundLayer:
    """The plate, its extension behind every depth edge, and its margin, as one point cloud."""
    depth = np.asarray(geometry.depth, dtype=np.float32)
    plate_depth, plate_colour = farthest_plate(depth, np.asarray(geometry.frames))
    h, w = plate_depth.shape
    long_side = max(h, w)
    K = np.asarray(geometry.K, dtype=np.float64)
    margin = max(1, round(MARGIN_FRACTION * long_side))
    colour_f = plate_colour.astype(np.float32)
    # push-pull disparity, not depth: a far sample then cannot drag a near fill far away
    values = np.concatenate([colour_f, (1.0 / plate_depth)[..., None]], axis=-1)

    # behind: sources = pixels that are (nearly) the farthest thing within the window around them
    window = max(3, round(FAR_WINDOW_FRACTION * long_side) | 1)
    local_far = _max_filter(plate_depth, window)
    far_side = plate_depth >= (1.0 - FARTHER) * local_far
    behind = push_pull(values, far_side.astype(np.float32))
    behind_depth = 1.0 / np.maximum(behind[..., 3], 1e-12)
    needs_behind = behind_depth > (1.0 + FARTHER) * plate_depth
    # ... and each far side continued along its own slope (floor behind a box stays floor)
    continued = continue_far_sides(1.0 / plate_depth, window)
    continued_any = np.logical_or.reduce([valid for _, valid in continued])
    # colour from what the source shows at the continued depth, the occluders left out, plus the
    # texture each continuation carries on from its edge (as far as it runs on unchanged there)
    colour_at_depth = DepthBinnedColour(plate_depth, colour_f, sources=~continued_any)
    residual = colour_f - _local_mean(colour_f, ~continued_any, TEXTURE_FRACTION * long_side)
    continued = continue_far_sides(1.0 / plate_depth, window, residual)  # again (0.07 s), now with texture
    textures = blend_continuations([1.0 / c[0] for c in continued], [c[1] for c in continued],
                                   [c[2] for c in continued], [c[3] for c in continued])
    continued_xyz, continued_rgb = [], []
    for (cont, valid, *_), texture in zip(continued, textures):
        cont_depth = 1.0 / cont
        rows, cols = np.nonzero(valid)
        continued_xyz.append(_unproject_pixels(cont_depth, K, 0, valid))
        continued_rgb.append(colour_at_depth(rows, cols, cont_depth[rows, cols]) + texture[rows, cols])
    needs_behind &= ~continued_any

    # margin: the whole plate, on a canvas grown by `margin` on every side
    canvas = np.zeros((h + 2 * margin, w + 2 * margin, 4), np.float32)
    canvas[margin:margin + h, margin:margin + w] = values
    known = np.zeros(canvas.shape[:2], np.float32)
    known[margin:margin + h, margin:margin + w] = 1.0
    around = push_pull(canvas, known)
    ring = known == 0
    around[..., 3] = _extrapolated_disparity(1.0 / plate_depth, margin)
    mean_colour = colour_f.reshape(-1, 3).mean(axis=0)
    rows = np.arange(h + 2 * margin)[:, None] - margin
    cols = np.arange(w + 2 * margin)[None, :] - margin
    outside = np.hypot(rows - np.clip(rows, 0, h - 1), cols - np.clip(cols, 0, w - 1))
    keep = np.exp(-outside / max(1.0, FADE_FRACTION * long_side))[..., None]
    around[..., :3] = mean_colour + (around[..., :3] - mean_colour) * keep

    parts_xyz = [
        _unproject_pixels(plate_depth, K, 0, np.ones_like(far_side)),
        _unproject_pixels(behind_depth, K, 0, needs_behind),
        _unproject_pixels(1.0 / np.maximum(around[..., 3], 1e-12), K, margin, ring),
        *continued_xyz,
    ]
    parts_rgb = [plate_colour.reshape(-1, 3), behind[..., :3][needs_behind], around[..., :3][ring], *continued_rgb]
    points = np.ascontiguousarray(np.concatenate(parts_xyz).T, dtype=np.float32)
    colours = np.clip(np.concatenate(parts_rgb).astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    return BackgroundLayer(points, colours, mean_colour.astype(np.float32), plate_colour)


def frame_cloud(geometry: SceneGeometry, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of the source frame behind output frame ``index`` as a point, hidden ones included:
    (3, N) float32 points and (N, 3) uint8 colours, as in :class:`BackgroundLayer`.

    The DW-mesh render drops the pixels on hidden faces (a ring at every depth edge); as points they
    carry their true colour and land where they belong, so an object's own edge fills its ring.
    """
    source = 0 if geometry.static else index
    depth = np.asarray(geometry.depth[source], dtype=np.float32).reshape(-1)
    ray_x, ray_y = _pixel_rays(geometry.depth.shape[1], geometry.depth.shape[2], np.asarray(geometry.K))
    points = np.empty((3, depth.size), np.float32)
    np.multiply(ray_x, depth, out=points[0])
    np.multiply(ray_y, depth, out=points[1])
    points[2] = depth
    colours = np.asarray(geometry.frames[source]).reshape(-1, 3)
    # the hidden backs of rounded objects, just inside their silhouettes (a sliver a new view sees)
    rows, cols, back_depth = limb_backs(geometry.depth[source])
    if len(rows):
        K = np.asarray(geometry.K, dtype=np.float64)
        z = back_depth.astype(np.float64)
        backs = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0] * z, (rows + 0.5 - K[1, 2]) / K[1, 1] * z, z])
        width = geometry.depth.shape[2]
        points = np.concatenate([points, backs.astype(np.float32)], axis=1)
        colours = np.concatenate([colours, colours[rows * width + cols]])
    return points, colours


_RAYS_CACHE: dict = {}


def _pixel_rays(h: int, w: int, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x/z and y/z of every pixel centre, (h*w,) float32 each; the last one asked for is kept."""
    key = (h, w, tuple(np.asarray(K, np.float64).reshape(-1)))
    if key not in _RAYS_CACHE:
        u = ((np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]).astype(np.float32)
        v = ((np.arange(h) + 0.5 - K[1, 2]) / K[1, 1]).astype(np.float32)
        _RAYS_CACHE.clear()
        _RAYS_CACHE[key] = (np.tile(u, h), np.repeat(v, w))
    return _RAYS_CACHE[key]


def _extrapolated_disparity(disparity: np.ndarray, margin: int, baseline: int = 8) -> np.ndarray:
    """Disparity on the canvas grown by ``margin``: inside as is, outside continued linearly from the border.

    A plane has linear disparity in the image, so a floor or a wall that runs out of the frame keeps
    its slope instead of becoming a vertical sheet at the border's depth. The step is measured
    between each border pixel and the pixel ``baseline`` further in (on a lightly blurred copy) and
    the result is clamped to [1/2, 2] x the border's disparity.
    """
    import cv2

    h, w = disparity.shape
    smooth = cv2.GaussianBlur(disparity.astype(np.float32), (0, 0), 1.5)
    rows = np.arange(h + 2 * margin)[:, None] - margin
    cols = np.arange(w + 2 * margin)[None, :] - margin
    k = max(1, min(baseline, (min(h, w) - 1) // 2))
    br, bc = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    ir, ic = np.clip(rows, k, h - 1 - k), np.clip(cols, k, w - 1 - k)
    border, inner = smooth[br, bc], smooth[ir, ic]
    out_dist = np.hypot(rows - br, cols - bc)
    in_dist = np.maximum(np.hypot(br - ir, bc - ic), 1.0)
    grown = border + (border - inner) * (out_dist / in_dist)
    grown = np.clip(grown, 0.5 * border, 2.0 * border)
    grown[margin:margin + h, margin:margin + w] = disparity
    return grown.astype(np.float32)


def _local_mean(colour: np.ndarray, sources: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``colour`` over the ``sources`` pixels only (normalised convolution)."""
    import cv2

    weight = sources.astype(np.float32)
    blurred = cv2.GaussianBlur(colour * weight[..., None], (0, 0), sigma)
    return blurred / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-6)[..., None]


def _max_filter(image: np.ndarray, window: int) -> np.ndarray:
    """Max over a square window, computed on a 4x max-pooled copy (a wide window is the point, not its edge)."""
    import cv2

    h, w = image.shape
    pool = 4 if min(h, w) >= 32 else 1
    ph, pw = -(-h // pool) * pool, -(-w // pool) * pool
    padded = np.pad(image, ((0, ph - h), (0, pw - w)), mode="edge")
    pooled = padded.reshape(ph // pool, pool, pw // pool, pool).max(axis=(1, 3))
    size = max(3, (window // pool) | 1)
    grown = cv2.dilate(pooled, np.ones((size, size), np.uint8))
    return np.repeat(np.repeat(grown, pool, axis=0), pool, axis=1)[:h, :w]


def _unproject_pixels(depth: np.ndarray, K: np.ndarray, offset: int, keep: np.ndarray) -> np.ndarray:
    """World points of the kept pixels of a (canvas) depth map whose pixel (offset, offset) is image pixel 0."""
    rows, cols = np.nonzero(keep)
    z = depth[rows, cols].astype(np.float64)
    x = (cols - offset + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (rows - offset + 0.5 - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=-1)


def splat(layer: BackgroundLayer, K: np.ndarray, w2c: np.ndarray, width: int, height: int,
          extra: Optional[tuple[np.ndarray, np.ndarray]] = None, region: Optional[np.ndarray] = None,
          gap_passes: int = 2, grids: Sequence[tuple[int, np.ndarray]] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Project the layer into one camera with a z-buffer: (H, W, 3) uint8 colour and (H, W) bool coverage.

    Each point lands on the pixel it falls in; the nearest wins. Small gaps (a surface seen larger
    than in the source) and background points seen through them are then closed from the
    surrounding nearer samples (:func:`close_gaps`). ``extra``: more (points, colours) splatted with
    the layer (e.g. a :func:`frame_cloud`); ``region``: (H, W) bool, the only pixels the caller
    needs (the result is exact within it, apart from ``gap_passes`` pixels at its edge). ``grids``:
    (first point index, (gh, gw, 3) image) for runs of points that are an image's pixels in row-major
    order (the plate, a frame cloud): a pixel won by one of them is resampled from that image where
    its centre really falls (:func:`_resample_from_grids`), not given the nearest sample's colour.
    Plain numpy: on a busy 2-core machine torch's thread pool made this 3x slower.
    """
    points, colours = layer.points, layer.colours
    if extra is not None:
        points, colours = np.concatenate([points, extra[0]], axis=1), np.concatenate([colours, extra[1]])
    if points.shape[1] >= 2 ** _INDEX_BITS:
        raise ValueError(f"too many points to splat: {points.shape[1]}")
    m = np.asarray(w2c, dtype=np.float32)
    x, y, z = (points[0] * m[r, 0] + points[1] * m[r, 1] + points[2] * m[r, 2] + m[r, 3] for r in range(3))
    inv_z = np.reciprocal(np.maximum(z, np.float32(1e-6)))
    u = x * inv_z
    u *= np.float32(K[0, 0])
    u += np.float32(K[0, 2])
    v = y * inv_z
    v *= np.float32(K[1, 1])
    v += np.float32(K[1, 2])
    inside = (z > 1e-6) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    index = np.nonzero(inside)[0]
    pixel = v[index].astype(np.int64) * width + u[index].astype(np.int64)  # >= 0: truncation = floor
    if region is not None:  # only points that can matter: in the region, or close enough to close a gap
        import cv2

        grow = 2 * gap_passes + 1
        wanted = cv2.dilate(region.astype(np.uint8), np.ones((grow, grow), np.uint8)).reshape(-1).astype(bool)
        keep = wanted[pixel]
        index, pixel = index[keep], pixel[keep]
    if grids:  # a surface seen larger than in the source: its grid cells cover several output pixels
        more_index, more_pixel = _magnified_cells(u, v, z, width, height, grids, index)
        index, pixel = np.concatenate([index, more_index]), np.concatenate([pixel, more_pixel])
    # positive float32 bits sort like the floats: depth above, point index below, one min per pixel
    key = z[index].view(np.int32).astype(np.int64)
    key <<= _INDEX_BITS
    key |= index
    empty = np.iinfo(np.int64).max
    zbuf = np.full(height * width, empty, dtype=np.int64)
    np.minimum.at(zbuf, pixel, key)
    covered = zbuf != empty
    winner = zbuf[covered] & ((1 << _INDEX_BITS) - 1)
    colour = np.zeros((height * width, 3), np.uint8)
    depth = np.full(height * width, np.inf, np.float32)
    colour[covered] = colours[winner]
    depth[covered] = z[winner]
    if grids:
        colour[covered] = _resample_from_grids(colour[covered], np.nonzero(covered)[0], winner, u, v, z, width, grids)
    colour, depth = colour.reshape(height, width, 3), depth.reshape(height, width)
    for _ in range(gap_passes):
        colour, depth = close_gaps(colour, depth)
    return colour, np.isfinite(depth)


#: A grid cell spanning more output pixels than this (per side) is not rasterised (a step, not a surface).
_MAX_CELL_PIXELS = 12


def _magnified_cells(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int, height: int,
                     grids, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(point index, output pixel) pairs for the output pixels inside magnified grid cells.

    A cell of a grid (a point, its right, lower and lower-right neighbours) on one surface (no depth
    step between its corners) that spans more than one output pixel -- a grazing face turned towards
    the new view, a close-up -- would leave gaps between its points. Each output pixel whose centre
    falls in the cell (in the affine map of its corner point) is given to the corner point; the
    resampling then reads the source where that centre falls. ``candidates``: the point indices
    worth looking at (those landing in or near the pixels wanted).
    """
    out_index, out_pixel = [], []
    for start, image in grids:
        gh, gw = image.shape[:2]
        if gh < 2 or gw < 2:
            continue
        k = candidates[(candidates >= start) & (candidates < start + gh * gw)]
        # the cells a candidate is a corner of (its own has it top-left)
        k = np.unique(np.concatenate([k, k - 1, k - gw, k - gw - 1]))
        local = k - start
        k = k[(local >= 0) & (local % gw < gw - 1) & (local // gw < gh - 1)]
        # magnified: the cell is more than a pixel wide or tall in the output (else points leave no gaps)
        wide = (np.abs(u[k + 1] - u[k]) + np.abs(u[k + gw] - u[k]) > 1) | (
            np.abs(v[k + 1] - v[k]) + np.abs(v[k + gw] - v[k]) > 1)
        k = k[wide]
        corners = (k, k + 1, k + gw, k + gw + 1)
        cu = np.stack([u[c] for c in corners])
        cv = np.stack([v[c] for c in corners])
        cz = np.stack([z[c] for c in corners])
        low_u, high_u = np.floor(cu.min(0) - 0.5), np.ceil(cu.max(0) - 0.5)
        low_v, high_v = np.floor(cv.min(0) - 0.5), np.ceil(cv.max(0) - 0.5)
        span_u, span_v = high_u - low_u, high_v - low_v
        big = (((span_u > 1) | (span_v > 1)) & (span_u <= _MAX_CELL_PIXELS) & (span_v <= _MAX_CELL_PIXELS)
               & (cz.min(0) > 1e-6) & (cz.max(0) < (1.0 + FARTHER) * cz.min(0))
               & (high_u >= 0) & (low_u < width) & (high_v >= 0) & (low_v < height))
        if not big.any():
            continue
        k, low_u, low_v = k[big], low_u[big], low_v[big]
        nu, nv = (span_u[big] + 1).astype(np.int64), (span_v[big] + 1).astype(np.int64)
        count = nu * nv
        cell = np.repeat(np.arange(len(k)), count)
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        pu = low_u[cell] + offset % nu[cell]
        pv = low_v[cell] + offset // nu[cell]
        kc = k[cell]
        # the pixel centre in the cell's affine map (corner k at 0, right at dc = 1, lower at dr = 1)
        a, b = u[kc + 1] - u[kc], u[kc + gw] - u[kc]
        d, e = v[kc + 1] - v[kc], v[kc + gw] - v[kc]
        det = a * e - b * d
        du, dv = pu + 0.5 - u[kc], pv + 0.5 - v[kc]
        with np.errstate(divide="ignore", invalid="ignore"):
            dc = (e * du - b * dv) / det
            dr = (a * dv - d * du) / det
        keep = ((dc >= 0) & (dc < 1) & (dr >= 0) & (dr < 1) & (pu >= 0) & (pu < width) & (pv >= 0) & (pv < height))
        out_index.append(kc[keep])
        out_pixel.append(pv[keep].astype(np.int64) * width + pu[keep].astype(np.int64))
    if not out_index:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_index), np.concatenate(out_pixel)


def _resample_from_grids(colour: np.ndarray, pixel: np.ndarray, winner: np.ndarray, u: np.ndarray,
                         v: np.ndarray, z: np.ndarray, width: int, grids) -> np.ndarray:
    """Colour of the won pixels, bilinear from the source image at the point under each pixel's centre.

    A splatted sample is up to half a pixel off the output pixel's centre; on sharp texture (a
    chequered floor) that shifts every edge. The winning point and its right and lower neighbours in
    the source image give the local mapping source -> output (a 2x2 Jacobian); inverting it at the
    pixel centre says where in the source to read. Only where those neighbours are the same surface
    (no depth step) and the read stays within a pixel of the point; elsewhere the nearest sample stays.
    """
    colour = colour.copy()
    centre_u = (pixel % width).astype(np.float32) + 0.5
    centre_v = (pixel // width).astype(np.float32) + 0.5
    for start, image in grids:
        gh, gw = image.shape[:2]
        own = (winner >= start) & (winner < start + gh * gw)
        k = winner[own]
        local = k - start
        r, c = local // gw, local % gw
        # forward differences, backward at the image's last row/column
        step_c = np.where(c < gw - 1, 1, -1)
        step_r = np.where(r < gh - 1, 1, -1)
        kc, kr = k + step_c, k + step_r * gw
        a, b = (u[kc] - u[k]) * step_c, (u[kr] - u[k]) * step_r
        d, e = (v[kc] - v[k]) * step_c, (v[kr] - v[k]) * step_r
        det = a * e - b * d
        du, dv = centre_u[own] - u[k], centre_v[own] - v[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            dc = (e * du - b * dv) / det
            dr = (a * dv - d * du) / det
        same = ((np.abs(z[kc] - z[k]) < FARTHER * z[k]) & (np.abs(z[kr] - z[k]) < FARTHER * z[k])
                & (np.abs(det) > 1e-6) & (np.abs(dc) <= 1) & (np.abs(dr) <= 1))
        if not same.any():
            continue
        sc = np.clip(c[same] + dc[same], 0, gw - 1)
        sr = np.clip(r[same] + dr[same], 0, gh - 1)
        c0, r0 = np.minimum(sc.astype(np.int64), gw - 2), np.minimum(sr.astype(np.int64), gh - 2)
        fc, fr = (sc - c0)[:, None], (sr - r0)[:, None]
        img = image.astype(np.float32) if image.dtype != np.float32 else image
        top = img[r0, c0] * (1 - fc) + img[r0, c0 + 1] * fc
        bottom = img[r0 + 1, c0] * (1 - fc) + img[r0 + 1, c0 + 1] * fc
        rows = np.nonzero(own)[0][same]
        colour[rows] = np.clip(top * (1 - fr) + bottom * fr + 0.5, 0, 255).astype(np.uint8)
    return colour


#: Offsets of the 8 neighbours.
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def close_gaps(colour: np.ndarray, depth: np.ndarray, majority: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Replace pixels most of whose 8 neighbours are clearly nearer (a gap, or something seen through one).

    An empty pixel (depth inf) inside a surface has 8 nearer neighbours and is filled; one on the
    outside of a straight edge has 3 and stays empty, so edges do not grow. The nearest neighbour's
    sample is taken.
    """
    h, w = depth.shape
    padded = np.pad(depth, 1, constant_values=np.inf)
    around = np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in _NEIGHBOURS])
    nearer = (around < depth * (1.0 - FARTHER)).sum(axis=0)
    rows, cols = np.nonzero(nearer >= majority)
    if len(rows) == 0:
        return colour, depth
    best = around[:, rows, cols].argmin(axis=0)
    offsets = np.array(_NEIGHBOURS)[best]
    src_r, src_c = rows + offsets[:, 0], cols + offsets[:, 1]
    colour, depth = colour.copy(), depth.copy()
    colour[rows, cols] = colour[src_r, src_c]
    depth[rows, cols] = depth[src_r, src_c]
    return colour, depth

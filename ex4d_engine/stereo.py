"""Stereo shots: both eyes from one DW-mesh, consistent with each other.

``joint`` (the default): generate the first eye; texture the DW-mesh (visible *and* hidden faces)
by projecting that generated eye onto it, render the second eye from the re-textured mesh, and let
the generator fill only what the first eye never saw. Content the first eye invented therefore
appears in the second eye at the disparity the mesh gives it.

``independent``: render and generate each eye on its own (what two mono shots would give); kept
for comparison (``bench/stereo_consistency.py``).

Projective texturing is done per pixel, not per vertex: a hidden face spans a depth jump with only
three vertices, so vertex colours could not hold what the generator painted inside it. Each eye
renders the mesh's world position per pixel; a second-eye pixel takes the first eye's colour where
its surface point projects into the first eye unoccluded (its depth lies within the first eye's depths
of the 2x2 pixels around it, within ``OCCLUSION_TOLERANCE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .contract import Trajectory
from .errors import InputError
from .generation.base import CancelCheck, GenerationRequest, check_cancel
from .pipeline import Conditioning, Progress, Scene, build_meshes, render_conditioning
from .raster import get_rasterizer
from .raster.base import mvp_matrices
from .stereo_rig import EYES, StereoRig, StereoTrajectories, check_rig_for_scene, stereo_trajectories

STEREO_MODES = ("joint", "independent")
#: Relative slack of the visibility test (the meshes of both eyes are the same, so it only has to
#: absorb rasterisation and sampling error).
OCCLUSION_TOLERANCE = 0.01
#: How the first eye is resampled into the second (and, in the benchmark, the right eye into the left).
#: Lanczos keeps more detail than bilinear through the two resamplings a joint pair is measured with.
INTERPOLATION = 4  # cv2.INTER_LANCZOS4
#: Pixels where one eye's pixel covers more than this many of the other's (or less than its inverse) are
#: seen by both eyes at different resolutions; ``stereo_consistency`` also reports PSNR without them.
MAX_AREA_RATIO = 2.0


@dataclass
class StereoShot:
    """Both generated eyes, (T, H, W, 3) uint8 each, and how they were made."""

    left: np.ndarray
    right: np.ndarray
    mode: str
    first_eye: str
    conditioning: dict = field(default_factory=dict)  # eye -> Conditioning given to the generator
    reused_fraction: float = 0.0  # share of the second eye's pixels taken from the first eye's output

    def eye(self, name: str) -> np.ndarray:
        return self.left if name == "left" else self.right


def near_and_subject_depth(scene: Scene) -> tuple[float, float]:
    """Robust nearest depth (2nd percentile) and subject depth (median) of frame 0, skirt excluded."""
    depth = scene.depth[0][1:-1, 1:-1] if min(scene.depth.shape[1:]) > 2 else scene.depth[0]
    return float(np.percentile(depth, 2)), float(np.median(depth))


def scene_stereo_trajectories(scene: Scene, camera: Trajectory, rig: StereoRig) -> StereoTrajectories:
    """Both eyes of ``camera`` with ``rig`` (depth units), refusing a rig absurd for this scene."""
    near, _ = near_and_subject_depth(scene)
    check_rig_for_scene(rig, near)  # StereoRigError is an InputError: it names the setting
    return stereo_trajectories(camera, rig)


def check_eye_pair(left: Trajectory, right: Trajectory) -> None:
    """Both eyes must share size, frame count and fps."""
    if (left.width, left.height) != (right.width, right.height):
        raise InputError(f"the eyes differ in size: left {left.width}x{left.height}, "
                         f"right {right.width}x{right.height}; both eyes must render at one size")
    if len(left) != len(right):
        raise InputError(f"the eyes differ in length: left {len(left)} frames, right {len(right)}")
    if abs(left.fps - right.fps) > 1e-9:
        raise InputError(f"the eyes differ in frame rate: left {left.fps:g}, right {right.fps:g}")


# ------------------------------------------------------------------ geometry
def render_positions(rasterizer, meshes, trajectory: Trajectory) -> np.ndarray:
    """(T, H, W, 4) float32: the world point of the DW-mesh seen at each pixel, and 1 where the mesh is hit."""
    ones = torch.ones_like(meshes.vertices[..., :1])
    attributes = torch.cat([meshes.vertices, ones], dim=-1)
    mvp = mvp_matrices(trajectory.K, trajectory.w2c, trajectory.width, trajectory.height)
    rgba = rasterizer.render(meshes.vertices, meshes.faces, attributes, mvp, trajectory.width, trajectory.height).rgba
    return rgba.cpu().numpy().astype(np.float32)


def warp_view(source_image: np.ndarray, source_positions: np.ndarray, source: Trajectory,
              target_positions: np.ndarray, target: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Carry ``source_image`` (T, H, W, C) onto the target view through the mesh's surface points.

    Returns the warped image (T, H, W, C) uint8 and ``valid`` (T, H, W) bool: the target pixel's
    surface point is in the source image and not occluded there (the mesh says both views see it).
    """
    import cv2

    t, h, w = target_positions.shape[:3]
    warped = np.zeros((t, h, w) + source_image.shape[3:], dtype=source_image.dtype)
    valid = np.zeros((t, h, w), dtype=bool)
    for i in range(t):
        hit = target_positions[i, ..., 3] > 0.5
        points = target_positions[i, ..., :3].reshape(-1, 3).astype(np.float64)
        uv, z = source.camera(i).project(points)
        map_x = (uv[:, 0] - 0.5).reshape(h, w).astype(np.float32)  # corner-origin -> pixel-index coordinates
        map_y = (uv[:, 1] - 0.5).reshape(h, w).astype(np.float32)
        # Not occluded: the point's depth lies within the depths of the source pixels around where it lands
        # (a steep hidden face changes depth fast from pixel to pixel; an occluder is nearer than all four).
        w2c = source.w2c[i]
        source_z = source_positions[i, ..., :3] @ w2c[2, :3].astype(np.float32) + np.float32(w2c[2, 3])
        hit_source = source_positions[i, ..., 3] > 0.5
        block = np.ones((2, 2), np.uint8)
        z_low = cv2.erode(np.where(hit_source, source_z, np.inf).astype(np.float32), block, anchor=(0, 0),
                          borderType=cv2.BORDER_REPLICATE)
        z_high = cv2.dilate(np.where(hit_source, source_z, -np.inf).astype(np.float32), block, anchor=(0, 0),
                            borderType=cv2.BORDER_REPLICATE)
        corner_x, corner_y = np.floor(map_x), np.floor(map_y)
        low = cv2.remap(z_low, corner_x, corner_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.inf)
        high = cv2.remap(z_high, corner_x, corner_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=-np.inf)
        z = z.reshape(h, w)
        inside = (map_x >= -0.5) & (map_x <= source.width - 0.5) & (map_y >= -0.5) & (map_y <= source.height - 0.5)
        seen = (z >= low * (1 - OCCLUSION_TOLERANCE)) & (z <= high * (1 + OCCLUSION_TOLERANCE))
        valid[i] = hit & inside & (z > 0) & (high > 0) & seen
        sampled = cv2.remap(source_image[i], map_x, map_y, INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
        warped[i] = np.where(valid[i].reshape(h, w, *([1] * (source_image.ndim - 3))), sampled, 0)
    return warped, valid


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit peak) of ``a`` vs ``b`` over the pixels where ``mask`` is True."""
    if not mask.any():
        raise InputError("no pixel is seen by both eyes: nothing to compare")
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


# ---------------------------------------------------------------- generation
def generate_stereo(
    scene: Scene,
    eyes: StereoTrajectories,
    generator,
    *,
    mode: str = "joint",
    first_eye: str = "left",
    seed: int = 0,
    steps: Optional[int] = None,
    prompt: Optional[str] = None,
    negative_prompt: Optional[str] = None,
    profile: Optional[str] = None,
    speed: Optional[str] = None,
    start_frame: int = 0,
    rasterizer=None,
    progress: Optional[Progress] = None,
    should_cancel: Optional[CancelCheck] = None,
) -> StereoShot:
    """Generate both eyes of a stereo shot with any generator of the protocol (draft, wan)."""
    if mode not in STEREO_MODES:
        raise InputError(f"stereo mode must be one of {', '.join(STEREO_MODES)}, got {mode!r}")
    if first_eye not in EYES:
        raise InputError(f"first eye must be 'left' or 'right', got {first_eye!r}")
    check_eye_pair(eyes.left, eyes.right)
    second_eye = "right" if first_eye == "left" else "left"
    first, second = eyes.eye(first_eye), eyes.eye(second_eye)
    n = len(first)
    rasterizer = rasterizer or get_rasterizer(scene.options.renderer)
    meshes = build_meshes(scene, slice(start_frame, start_frame + n))
    report = progress or (lambda fraction, stage: None)

    def request(colour: np.ndarray, mask: np.ndarray) -> GenerationRequest:
        return GenerationRequest(colour=colour, mask=mask, fps=first.fps, seed=seed, steps=steps, prompt=prompt,
                                 negative_prompt=negative_prompt, profile=profile, speed=speed)

    def generate(conditioning: Conditioning, lo: float, hi: float, eye: str) -> np.ndarray:
        def on_progress(fraction: float, stage: str) -> None:
            report(lo + (hi - lo) * fraction, f"{eye} eye: {stage}")

        return generator.generate(request(conditioning.colour, conditioning.mask), progress=on_progress,
                                  should_cancel=should_cancel)

    report(0.0, f"{first_eye} eye: rendering")
    first_cond = render_conditioning(scene, first, start_frame=start_frame, rasterizer=rasterizer, meshes=meshes,
                                     should_cancel=should_cancel)
    second_cond = render_conditioning(scene, second, start_frame=start_frame, rasterizer=rasterizer, meshes=meshes,
                                      force_source_frame0=False, should_cancel=should_cancel)
    first_out = generate(first_cond, 0.05, 0.5, first_eye)
    check_cancel(should_cancel)
    reused = 0.0
    if mode == "joint":
        report(0.5, f"{second_eye} eye: re-texturing the DW-mesh with the {first_eye} eye")
        first_positions = render_positions(rasterizer, meshes, first)
        second_positions = render_positions(rasterizer, meshes, second)
        warped, valid = warp_view(first_out, first_positions, first, second_positions, second)
        # the re-textured mesh: the first eye's output where it sees the surface, the clip elsewhere
        visible = valid | (second_cond.mask == 255)
        colour = np.where(valid[..., None], warped, second_cond.colour)
        colour = (colour * visible[..., None]).astype(np.uint8)
        second_cond = Conditioning(colour, (visible * 255).astype(np.uint8), False)
        reused = float(valid.mean())
    check_cancel(should_cancel)
    second_out = generate(second_cond, 0.55, 1.0, second_eye)
    outputs = {first_eye: first_out, second_eye: second_out}
    report(1.0, "stereo shot ready")
    return StereoShot(outputs["left"], outputs["right"], mode, first_eye,
                      {first_eye: first_cond, second_eye: second_cond}, reused)


def stereo_consistency(scene: Scene, eyes: StereoTrajectories, shot: StereoShot, *, start_frame: int = 0,
                       rasterizer=None) -> dict:
    """Masked PSNR of the right eye warped into the left view, over the pixels both eyes see on the mesh.

    ``psnr_db``: every co-visible pixel. ``psnr_generated_db``: the co-visible pixels the left eye's
    generator had to fill (hidden faces: invented content). ``psnr_comparable_db``: co-visible pixels
    seen at comparable resolution (the warp's area ratio within 1/MAX_AREA_RATIO..MAX_AREA_RATIO; a
    grazing face one pixel wide in one eye cannot hold five pixels of the other). Diagnostics, not the
    measure: ``psnr_strict_db`` over the co-visible pixels whose point the right eye's nearest pixel
    really sees (``_seen_at_nearest_pixel``), and ``error_share_not_strict``, the share of the squared
    error on the others.
    """
    rasterizer = rasterizer or get_rasterizer(scene.options.renderer)
    meshes = build_meshes(scene, slice(start_frame, start_frame + len(eyes.left)))
    left_positions = render_positions(rasterizer, meshes, eyes.left)
    right_positions = render_positions(rasterizer, meshes, eyes.right)
    warped, both = warp_view(shot.right, right_positions, eyes.right, left_positions, eyes.left)
    left_render = render_conditioning(scene, eyes.left, start_frame=start_frame, rasterizer=rasterizer, meshes=meshes,
                                      force_source_frame0=False)
    generated = both & (left_render.mask == 0)
    comparable = both & _comparable_resolution(left_positions, eyes.right)
    strict = both & _seen_at_nearest_pixel(left_positions, right_positions, eyes.right)
    error = ((shot.left.astype(np.float64) - warped.astype(np.float64)) ** 2).mean(axis=-1)
    result = {"psnr_db": masked_psnr(shot.left, warped, both), "covisible_fraction": float(both.mean()),
              "psnr_comparable_db": masked_psnr(shot.left, warped, comparable),
              "comparable_fraction_of_covisible": float(comparable.sum() / both.sum()),
              "psnr_generated_db": masked_psnr(shot.left, warped, generated) if generated.any() else None,
              "generated_fraction_of_covisible": float(generated.sum() / both.sum()),
              "psnr_strict_db": masked_psnr(shot.left, warped, strict) if strict.any() else None,
              "strict_fraction_of_covisible": float(strict.sum() / both.sum()),
              "error_share_not_strict": float(error[both & ~strict].sum() / max(error[both].sum(), 1e-12))}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}


def _seen_at_nearest_pixel(target_positions: np.ndarray, source_positions: np.ndarray,
                           source: Trajectory) -> np.ndarray:
    """(T, H, W) bool: the source pixel nearest to where a target pixel's surface point lands sees that point.

    The nearest pixel's depth, carried to the landing point along its own surface's slope (the smaller
    of the one-sided differences, so a slope does not reach across a depth edge), must match the point's
    depth within OCCLUSION_TOLERANCE. Stricter than ``warp_view``'s 2x2 depth range, which also lets
    through points next to an occluding edge and on hidden faces that turn away from the source; those
    pixels count in ``psnr_db`` for both modes alike, and this is how much of the error they carry.
    """
    out = np.zeros(target_positions.shape[:3], dtype=bool)
    h, w = out.shape[1:]
    for i in range(len(out)):
        uv, z = source.camera(i).project(target_positions[i, ..., :3].reshape(-1, 3).astype(np.float64))
        map_x, map_y = (np.nan_to_num(uv[:, k].reshape(h, w) - 0.5, nan=-1.0, posinf=-1.0, neginf=-1.0)
                        for k in (0, 1))  # a point that projects nowhere lands nowhere
        w2c = source.w2c[i]
        source_z = source_positions[i, ..., :3].astype(np.float64) @ w2c[2, :3] + w2c[2, 3]
        source_z = np.where(source_positions[i, ..., 3] > 0.5, source_z, np.nan)
        grad_x, grad_y = _one_sided_slope(source_z, axis=1), _one_sided_slope(source_z, axis=0)
        with np.errstate(invalid="ignore", over="ignore"):
            near_x = np.clip(np.rint(map_x), 0, source_z.shape[1] - 1).astype(int)
            near_y = np.clip(np.rint(map_y), 0, source_z.shape[0] - 1).astype(int)
            landed = ((map_x >= -0.5) & (map_x <= source_z.shape[1] - 0.5)
                      & (map_y >= -0.5) & (map_y <= source_z.shape[0] - 0.5))
            predicted = (source_z[near_y, near_x] + grad_x[near_y, near_x] * (map_x - near_x)
                         + grad_y[near_y, near_x] * (map_y - near_y))
            z = z.reshape(h, w)
            out[i] = landed & (np.abs(predicted - z) <= OCCLUSION_TOLERANCE * np.abs(z))
    return out


def _one_sided_slope(depth: np.ndarray, axis: int) -> np.ndarray:
    """Per-pixel depth slope along ``axis``: the one-sided difference of smaller magnitude (NaN = no surface:
    the other side's; 0 where neither side has one)."""
    pad = np.full_like(np.take(depth, [0], axis=axis), np.nan)
    forward = np.diff(depth, axis=axis, append=pad)
    backward = np.diff(depth, axis=axis, prepend=pad)
    use_forward = np.isnan(backward) | (np.abs(forward) < np.abs(backward))
    return np.nan_to_num(np.where(use_forward, forward, backward), nan=0.0)


def _comparable_resolution(target_positions: np.ndarray, source: Trajectory) -> np.ndarray:
    """(T, H, W) bool: a target pixel's footprint in the source view is within MAX_AREA_RATIO of one pixel."""
    out = np.zeros(target_positions.shape[:3], dtype=bool)
    h, w = out.shape[1:]
    for i in range(len(out)):
        uv, _ = source.camera(i).project(target_positions[i, ..., :3].reshape(-1, 3).astype(np.float64))
        mx, my = uv[:, 0].reshape(h, w), uv[:, 1].reshape(h, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            area = np.abs(np.gradient(mx, axis=1) * np.gradient(my, axis=0)
                          - np.gradient(mx, axis=0) * np.gradient(my, axis=1))
            out[i] = (area >= 1.0 / MAX_AREA_RATIO) & (area <= MAX_AREA_RATIO)
    return out

"""Stage A of EX-4D as functions: clip + depth -> Scene -> DW-meshes -> colour/mask along a trajectory.

The CLI (``ex4d recon``), the server and the demo all go through here::

    scene = load_scene("clip.mp4", depth_file="depth.npz")
    trajectory = preset_trajectory(scene, "30")
    conditioning = render_conditioning(scene, trajectory)
    save_conditioning(conditioning, trajectory.fps, "color_30.mp4", "mask_30.mp4")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from . import video_io
from .contract import Trajectory
from .errors import InputError
from .generation.base import CancelCheck, SceneGeometry, check_cancel
from .intrinsics import resolve_intrinsics
from .mesh import DWMeshSequence, build_dwmesh
from .presets import make_preset, pivot_radius
from .raster import get_rasterizer
from .raster.base import Rasterizer, mvp_matrices
from .scene import ReconOptions, Scene  # noqa: F401  (re-exported: the pipeline's inputs)

#: progress(fraction 0..1, stage)
Progress = Callable[[float, str], None]

#: The seed's visibility threshold on rendered alpha (0..255).
MASK_ALPHA_THRESHOLD = 125


@dataclass
class Conditioning:
    """What the generator sees. colour: (T, H, W, 3) uint8, black where masked; mask: (T, H, W) uint8 {0, 255}.

    ``preview_colour`` (only with ``render_conditioning(..., preview=True)``): the same render divided by
    its coverage, for what people look at (the draft preview); ``colour`` stays the seed-literal render
    that the EX-4D weights were trained on.
    """

    colour: np.ndarray
    mask: np.ndarray
    frame0_is_source: bool
    preview_colour: Optional[np.ndarray] = None

    def as_preview(self) -> "Conditioning":
        """The same with ``colour`` = the faithful ``preview_colour`` (when rendered): what a preview was
        filled from, and so what to show next to it (the server's conditioning video of a draft job)."""
        if self.preview_colour is None:
            return self
        return Conditioning(self.preview_colour, self.mask, self.frame0_is_source, self.preview_colour)


# ------------------------------------------------------------------ scene
def load_scene(
    video_path: str | os.PathLike,
    *,
    depth_file: Optional[str | os.PathLike] = None,
    depth_backend: Optional[str] = None,
    models_dir: Optional[str] = None,
    options: ReconOptions = ReconOptions(),
    progress: Optional[Progress] = None,
    should_cancel: Optional[CancelCheck] = None,
) -> Scene:
    """Read the clip at the working resolution and get its depth (a file or a depth model).

    ``should_cancel`` is checked between stages and at every progress report of the depth model,
    so a cancelled job stops within one model step.
    """
    if options.num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {options.num_frames}")
    if depth_file is None and depth_backend in (None, "file"):
        raise InputError("no depth given: pass --depth_file FILE, or --depth_backend NAME (depth-anything is the "
                         "licence-clean one; `ex4d models` lists them and their weights)")
    _report(progress, 0.0, "reading video")
    info = video_io.probe(video_path)
    w, h = video_io.working_size(info.width, info.height, options.size_multiple, options.max_long_side)
    model_focal = None
    if depth_file is not None:  # checked before the video is decoded: a bad depth file fails in a second
        depth_frames = 1 if options.only_first_frame else min(options.num_frames, info.num_frames)
        depth = _read_depth_file(depth_file, info, w, h, depth_frames)
    clip = video_io.read_video(video_path, max_frames=options.num_frames, size=(w, h))
    t = clip.frames.shape[0]

    check_cancel(should_cancel)
    _report(progress, 0.2, "depth")
    if depth_file is not None:
        if options.only_first_frame and len(depth) < t:  # one depth frame is all a static scene needs
            depth = np.repeat(depth[:1], t, axis=0)
        if len(depth) < t:
            raise InputError(f"depth file {os.fspath(depth_file)} has {len(depth)} frames, the video has {t}")
        depth, depth_source, depth_units = depth[:t], "file", "depth-file units"
    else:
        from .depth import estimate_depth
        from .depth.file import validate_depth

        def depth_progress(fraction: float, stage: str) -> None:
            check_cancel(should_cancel)
            _report(progress, 0.2 + 0.75 * fraction, f"depth: {stage}")

        estimate = estimate_depth(depth_backend, clip.frames, models_dir=models_dir, device=options.device,
                                  progress=depth_progress, depthcrafter_repo=options.depthcrafter_repo,
                                  stabilise=options.stabilise_depth)
        depth = validate_depth(estimate.depth, t, h, w, source=f"depth from {depth_backend}")
        depth_source, depth_units, model_focal = estimate.backend, estimate.units, estimate.focal_px
    if options.fov_auto and model_focal is None:
        raise InputError("--fov auto needs a depth backend that estimates the focal length; "
                         f"{depth_source!r} does not (give --fov or --focal)")
    intrinsics = resolve_intrinsics(w, h, fov_deg=options.fov_deg, focal_px=options.focal_px,
                                    model_focal_px=model_focal if options.fov_auto else None)
    _report(progress, 1.0, "scene ready")
    return Scene(clip.frames, depth, intrinsics, clip.fps, depth_source, depth_units, options)


def _read_depth_file(path, info, w: int, h: int, frames: int) -> np.ndarray:
    """The depth file's first ``frames`` frames at the working size, checked (header first, then values)."""
    from .depth.file import load_depth_file, validate_depth

    depth = load_depth_file(path, sizes={(info.width, info.height), (w, h)}, max_frames=frames)
    if depth.ndim == 2:  # one frame
        depth = depth[None]
    where = f"depth file {os.fspath(path)}"
    if depth.ndim == 3 and depth.shape[1:] == (info.height, info.width) and (h, w) != (info.height, info.width):
        # depth given at the source resolution: check every value, then resize like the frames
        depth = _resize_depth(validate_depth(depth, frames, info.height, info.width, source=where), w, h)
    return validate_depth(depth, frames, h, w, source=where)


def _resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    # nearest keeps depth edges sharp (no flying pixels); same centre crop as the frames
    import cv2

    t, h0, w0 = depth.shape
    scale = max(width / w0, height / h0)
    sw, sh = max(width, int(np.ceil(w0 * scale - 1e-9))), max(height, int(np.ceil(h0 * scale - 1e-9)))
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    return np.stack([cv2.resize(d, (sw, sh), interpolation=cv2.INTER_NEAREST)[y0:y0 + height, x0:x0 + width]
                     for d in depth])


# ------------------------------------------------------------ trajectories
def source_trajectory(scene: Scene) -> Trajectory:
    """The source camera at every frame (identity w2c, the scene's K)."""
    w2c = np.repeat(np.eye(4)[None], scene.num_frames, axis=0)
    return Trajectory(scene.width, scene.height, scene.fps, scene.K, w2c, {"preset": "source"})


def preset_trajectory(scene: Scene, name: str, num_frames: Optional[int] = None, use_seed_rounds: bool = True) -> Trajectory:
    """A named preset (see :mod:`ex4d_engine.presets`) for this scene, pivot from frame-0 depth."""
    radius = pivot_radius(scene.depth[0], scene.options.mesh.border_depth)
    return make_preset(name, num_frames=num_frames or scene.num_frames, K=scene.K, width=scene.width,
                       height=scene.height, fps=scene.fps, radius=radius, use_seed_rounds=use_seed_rounds)


# --------------------------------------------------------------- geometry
def mesh_device(options: ReconOptions) -> torch.device:
    if options.device != "auto":
        return torch.device(options.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_meshes(scene: Scene, frames: Optional[slice] = None) -> DWMeshSequence:
    """DW-meshes of the scene (frame 0 only when static); ``frames`` picks a sub-range."""
    pick = slice(0, 1) if scene.options.only_first_frame else (frames or slice(None))
    return build_dwmesh(torch.from_numpy(np.ascontiguousarray(scene.depth[pick])), scene.frames[pick],
                        scene.K, scene.options.mesh, device=mesh_device(scene.options))


def render_conditioning(
    scene: Scene,
    trajectory: Trajectory,
    *,
    start_frame: int = 0,
    rasterizer: Optional[Rasterizer] = None,
    meshes: Optional[DWMeshSequence] = None,
    force_source_frame0: Optional[bool] = None,
    preview: bool = False,
    progress: Optional[Progress] = None,
    should_cancel: Optional[CancelCheck] = None,
) -> Conditioning:
    """Render colour + visibility mask along ``trajectory``, exactly as the seed's conditioning.

    Trajectory frame i sees the DW-mesh of scene frame ``start_frame + i`` (frame 0's mesh for a
    static scene). mask = 255 where rendered alpha > 125; colour is multiplied by the mask. Frame 0
    is replaced by the source frame with an all-white mask (the seed's rule) when
    ``force_source_frame0`` is True, or, by default, when camera 0 *is* the source camera.

    ``preview=True`` also returns ``preview_colour``, the faithful render for previews: the seed
    zeroes the RGB of hidden vertices, so every visible pixel near a silhouette is darkened by the
    interpolated zeros; dividing the interpolated RGB by the interpolated alpha (which carries the
    same zeros) undoes exactly that, and keeps the same mask (docs/dwmesh.md, "Faithful preview").
    """
    trajectory.validate()
    n = len(trajectory)
    if not scene.options.only_first_frame and start_frame + n > scene.num_frames:
        raise InputError(f"trajectory has {n} frames starting at scene frame {start_frame}, "
                         f"but the scene has {scene.num_frames} frames (use a static scene for longer paths)")
    if start_frame < 0:
        raise InputError(f"start_frame must be >= 0, got {start_frame}")
    check_cancel(should_cancel)
    _report(progress, 0.0, "building DW-mesh")
    if meshes is None:
        meshes = build_meshes(scene, slice(start_frame, start_frame + n))
    check_cancel(should_cancel)
    rasterizer = rasterizer or get_rasterizer(scene.options.renderer)
    mvp = mvp_matrices(trajectory.K, trajectory.w2c, trajectory.width, trajectory.height)

    def on_frame(done: int) -> None:
        check_cancel(should_cancel)
        _report(progress, 0.1 + 0.9 * done / n, "rendering")

    rgba = rasterizer.render(meshes.vertices, meshes.faces, meshes.rgba, mvp, trajectory.width,
                             trajectory.height, progress=on_frame).rgba
    visible = rgba[..., 3] > MASK_ALPHA_THRESHOLD
    mask = (visible.to(torch.uint8) * 255).cpu().numpy()
    colour = (rgba[..., :3].round().clamp(0, 255) * visible[..., None]).to(torch.uint8).cpu().numpy()
    preview_colour = None
    if preview:
        coverage = rgba[..., 3:].clamp_min(1e-6) / 255.0
        preview_colour = ((rgba[..., :3] / coverage).round().clamp(0, 255) * visible[..., None]).to(torch.uint8)
        preview_colour = preview_colour.cpu().numpy()

    if force_source_frame0 is None:
        force_source_frame0 = camera0_is_source(scene, trajectory)
    if force_source_frame0:
        if (trajectory.width, trajectory.height) != (scene.width, scene.height):
            raise InputError("cannot put the source frame at frame 0: trajectory size "
                             f"{trajectory.width}x{trajectory.height} differs from the scene's {scene.width}x{scene.height}")
        colour[0] = scene.frames[start_frame if not scene.options.only_first_frame else 0]
        mask[0] = 255
        if preview_colour is not None:
            preview_colour[0] = colour[0]
    _report(progress, 1.0, "rendered")
    return Conditioning(colour, mask, bool(force_source_frame0), preview_colour)


def generation_geometry(scene: Scene, trajectory: Trajectory, start_frame: int = 0) -> SceneGeometry:
    """What a geometry-aware generator (the draft preview) needs about this shot: the source frames
    and depth behind each rendered frame, the source K, and the trajectory's cameras."""
    n = len(trajectory)
    pick = slice(0, 1) if scene.options.only_first_frame else slice(start_frame, start_frame + n)
    return SceneGeometry(frames=scene.frames[pick], depth=np.asarray(scene.depth[pick], np.float32), K=scene.K,
                         camera_K=np.asarray(trajectory.K), camera_w2c=np.asarray(trajectory.w2c))


def camera0_is_source(scene: Scene, trajectory: Trajectory, tolerance: float = 1e-6) -> bool:
    """True when trajectory frame 0 is the source camera (same size, K and identity pose)."""
    return (
        (trajectory.width, trajectory.height) == (scene.width, scene.height)
        and np.allclose(trajectory.K[0], scene.K, atol=tolerance * max(scene.width, scene.height))
        and np.allclose(trajectory.w2c[0], np.eye(4), atol=tolerance)
    )


def save_conditioning(
    conditioning: Conditioning,
    fps: float,
    colour_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    mask_format: str = "mp4",
    colour_format: str = "mp4",
) -> None:
    """Write the colour and the mask. The mask: lossless mp4, or a folder of PNGs (``mask_format='png'``).

    The colour: ``mp4`` (H.264 yuv420p, plays everywhere; lossy), ``lossless`` (H.264 RGB qp 0, exact) or
    ``png`` (a folder of PNGs, exact). The mask is written first: a colour file never exists without its mask.
    """
    for what, fmt, writers in (("mask", mask_format, MASK_WRITERS), ("colour", colour_format, COLOUR_WRITERS)):
        if fmt not in writers:
            raise InputError(f"{what} format must be one of {', '.join(writers)}, got {fmt!r}")
    MASK_WRITERS[mask_format](mask_path, conditioning.mask, fps)
    COLOUR_WRITERS[colour_format](colour_path, conditioning.colour, fps)


#: How the mask and the colour conditioning can be written (``ex4d recon --mask_format / --color_format``).
MASK_WRITERS = {"mp4": video_io.write_mask_video,
                "png": lambda path, frames, _fps: video_io.write_png_sequence(path, frames, prefix="mask")}
COLOUR_WRITERS = {"mp4": video_io.write_video, "lossless": video_io.write_lossless_video,
                  "png": lambda path, frames, _fps: video_io.write_png_sequence(path, frames, prefix="color")}
COLOUR_FORMATS = tuple(COLOUR_WRITERS)


def _report(progress: Optional[Progress], fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)


def write_scene_package(scene: Scene, path: str | os.PathLike, meshes: Optional[DWMeshSequence] = None,
                        scene_id: Optional[str] = None) -> None:
    """Write the Blender scene package (docs/scene_package.md) for ``scene``; ``scene_id``: the server's id."""
    from .scene_package import write_scene_package as write_package

    write_package(scene, path, meshes if meshes is not None else build_meshes(scene), scene_id)

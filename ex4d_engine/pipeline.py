"""Stage A of EX-4D as functions: clip + depth -> Scene -> DW-meshes -> colour/mask along a trajectory.

The CLI (``ex4d recon``), the server and the demo all go through here::

    scene = load_scene("clip.mp4", depth_file="depth.npz")
    trajectory = preset_trajectory(scene, "30")
    conditioning = render_conditioning(scene, trajectory)
    save_conditioning(conditioning, trajectory.fps, "color_30.mp4", "mask_30.mp4")
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from . import video_io
from .contract import Trajectory, TrajectoryError
from .errors import InputError
from .generation.base import CancelCheck, check_cancel
from .intrinsics import Intrinsics, resolve_intrinsics
from .mesh import DWMeshSequence, MeshOptions, build_dwmesh
from .presets import make_preset, pivot_radius
from .raster import get_rasterizer
from .raster.base import Rasterizer, mvp_matrices

#: progress(fraction 0..1, stage)
Progress = Callable[[float, str], None]

#: The seed's visibility threshold on rendered alpha (0..255).
MASK_ALPHA_THRESHOLD = 125


@dataclass(frozen=True)
class ReconOptions:
    """Options of the reconstruction, recorded in the scene.

    Attributes:
        num_frames: frames taken from the start of the clip (seed: 49); a shorter clip uses all it has.
        only_first_frame: static scene: frame 0's mesh for every camera.
        fov_deg / focal_px: source intrinsics (horizontal FOV, or focal in working-resolution pixels);
            neither: the seed's f = 500 px; ``fov_auto``: the depth model's estimate.
        max_long_side / size_multiple: working resolution rule (seed: 1024 / 64).
        mesh: DW-mesh construction options.
        renderer: "auto", "opengl" or "nvdiffrast".
        device: torch device for mesh building and depth models ("auto": CUDA when present).
        depthcrafter_repo: the user's DepthCrafter checkout (``depthcrafter`` backend only).
        stabilise_depth: temporal scale/shift stabilisation of per-frame depth models.
    """

    num_frames: int = 49
    only_first_frame: bool = False
    fov_deg: Optional[float] = None
    focal_px: Optional[float] = None
    fov_auto: bool = False
    max_long_side: int = 1024
    size_multiple: int = 64
    mesh: MeshOptions = field(default_factory=MeshOptions)
    renderer: str = "auto"
    device: str = "auto"
    depthcrafter_repo: Optional[str] = None
    stabilise_depth: bool = True


@dataclass
class Scene:
    """A reconstructed clip: source frames, depth and source intrinsics at the working resolution."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    depth: np.ndarray  # (T, H, W) float32, planar z-depth
    intrinsics: Intrinsics
    fps: float
    depth_source: str
    depth_units: str
    options: ReconOptions
    scene_scale: float = 1.0

    @property
    def K(self) -> np.ndarray:
        return self.intrinsics.K

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    # -------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Store as one .npz (arrays + JSON metadata), atomically."""
        meta = {
            "K": self.K.tolist(), "intrinsics_source": self.intrinsics.source, "fps": self.fps,
            "depth_source": self.depth_source, "depth_units": self.depth_units, "scene_scale": self.scene_scale,
            "options": asdict(self.options),
        }
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, frames=self.frames, depth=self.depth, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Scene":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            frames, depth = data["frames"], data["depth"]
        opts = dict(meta["options"])
        opts["mesh"] = MeshOptions(**opts["mesh"])
        return cls(frames, depth, Intrinsics(np.asarray(meta["K"]), meta["intrinsics_source"]), meta["fps"],
                   meta["depth_source"], meta["depth_units"], ReconOptions(**opts), meta["scene_scale"])


@dataclass
class Conditioning:
    """What the generator sees. colour: (T, H, W, 3) uint8, black where masked; mask: (T, H, W) uint8 {0, 255}."""

    colour: np.ndarray
    mask: np.ndarray
    frame0_is_source: bool


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
        raise InputError("no depth given: pass --depth_file, or a depth backend (see `ex4d models`)")
    _report(progress, 0.0, "reading video")
    info = video_io.probe(video_path)
    size = video_io.working_size(info.width, info.height, options.size_multiple, options.max_long_side)
    clip = video_io.read_video(video_path, max_frames=options.num_frames, size=size)
    t, h, w = clip.frames.shape[:3]

    check_cancel(should_cancel)
    _report(progress, 0.2, "depth")
    model_focal = None
    if depth_file is not None:
        from .depth.file import load_depth_file, validate_depth

        sizes = {(info.width, info.height), (w, h)}
        depth = load_depth_file(depth_file, sizes=sizes, max_frames=t)
        where = f"depth file {os.fspath(depth_file)}"
        if depth.ndim == 3 and depth.shape[1:] == (info.height, info.width) and (h, w) != (info.height, info.width):
            # depth given at the source resolution: check every value, then resize like the frames
            depth = _resize_depth(validate_depth(depth, t, info.height, info.width, source=where), w, h)
        depth = validate_depth(depth, t, h, w, source=where)
        depth_source, depth_units = "file", "depth-file units"
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


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Read an ``ex4d.trajectory`` file; contract violations become InputError naming frame and field."""
    try:
        return Trajectory.load(path)
    except FileNotFoundError:
        from .errors import NotFoundError

        raise NotFoundError(f"trajectory file not found: {os.fspath(path)}") from None
    except (TrajectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"trajectory {os.fspath(path)}: {exc}") from None


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
    progress: Optional[Progress] = None,
    should_cancel: Optional[CancelCheck] = None,
) -> Conditioning:
    """Render colour + visibility mask along ``trajectory``, exactly as the seed's conditioning.

    Trajectory frame i sees the DW-mesh of scene frame ``start_frame + i`` (frame 0's mesh for a
    static scene). mask = 255 where rendered alpha > 125; colour is multiplied by the mask. Frame 0
    is replaced by the source frame with an all-white mask (the seed's rule) when
    ``force_source_frame0`` is True, or, by default, when camera 0 *is* the source camera.
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

    if force_source_frame0 is None:
        force_source_frame0 = camera0_is_source(scene, trajectory)
    if force_source_frame0:
        if (trajectory.width, trajectory.height) != (scene.width, scene.height):
            raise InputError("cannot put the source frame at frame 0: trajectory size "
                             f"{trajectory.width}x{trajectory.height} differs from the scene's {scene.width}x{scene.height}")
        colour[0] = scene.frames[start_frame if not scene.options.only_first_frame else 0]
        mask[0] = 255
    _report(progress, 1.0, "rendered")
    return Conditioning(colour, mask, bool(force_source_frame0))


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
) -> None:
    """Write the colour video and the mask (lossless mp4, or a folder of PNGs for ``mask_format='png'``).

    The mask is written first: a colour file never exists without its mask.
    """
    if mask_format == "png":
        video_io.write_png_sequence(mask_path, conditioning.mask, prefix="mask")
    elif mask_format == "mp4":
        video_io.write_mask_video(mask_path, conditioning.mask, fps)
    else:
        raise InputError(f"mask format must be 'mp4' or 'png', got {mask_format!r}")
    video_io.write_video(colour_path, conditioning.colour, fps)


def _report(progress: Optional[Progress], fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)


def write_scene_package(scene: Scene, path: str | os.PathLike, meshes: Optional[DWMeshSequence] = None,
                        scene_id: Optional[str] = None) -> None:
    """Write the Blender scene package (docs/scene_package.md) for ``scene``; ``scene_id``: the server's id."""
    from .scene_package import write_scene_package as write_package

    write_package(scene, path, meshes if meshes is not None else build_meshes(scene), scene_id)

"""What a reconstruction produces: the clip's frames and depth at the working resolution, and its options.

A :class:`Scene` is the input of every later stage (meshes, renders, scene package, generation).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from .atomic import atomic_path
from .intrinsics import Intrinsics
from .mesh import MeshOptions
from .video_io import FrameStack


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
class Scene(FrameStack):
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


    # -------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Store as one .npz (arrays + JSON metadata), atomically."""
        meta = {
            "K": self.K.tolist(), "intrinsics_source": self.intrinsics.source, "fps": self.fps,
            "depth_source": self.depth_source, "depth_units": self.depth_units, "scene_scale": self.scene_scale,
            "options": asdict(self.options),
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, frames=self.frames, depth=self.depth,
                     meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Scene":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            frames, depth = data["frames"], data["depth"]
        opts = dict(meta["options"])
        opts["mesh"] = MeshOptions(**opts["mesh"])
        return cls(frames, depth, Intrinsics(np.asarray(meta["K"]), meta["intrinsics_source"]), meta["fps"],
                   meta["depth_source"], meta["depth_units"], ReconOptions(**opts), meta["scene_scale"])

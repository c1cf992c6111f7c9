"""What a job does with the engine: ``recon`` (clip -> Scene + package) and ``generate``
(scene + trajectory -> conditioning -> generator -> result). Runs in the worker process only.

Every artefact is written under a temporary name and renamed into place (``atomic_path``);
the API serves final names only.
"""

from __future__ import annotations

import json
from typing import Any

from ex4d_engine.contract import Trajectory

from .artefacts import CONDITIONING_VIDEOS, RESULT_VIDEO, SCENE_ARRAYS, SCENE_PACKAGE, atomic_path
from .worker import JobContext


def run_recon(ctx: JobContext) -> dict[str, Any]:
    """Reconstruct the job's scene; returns the metadata stored on the scene row."""
    from ex4d_engine.pipeline import ReconOptions, build_meshes, load_scene, source_trajectory, write_scene_package

    scene_row = ctx.store.get_scene(ctx.job.scene_id)
    opts = scene_row.options
    options = ReconOptions(num_frames=opts.get("num_frames", 49), only_first_frame=opts.get("only_first_frame", False),
                           fov_deg=opts.get("fov_deg"), focal_px=opts.get("focal_px"))
    backend = opts.get("depth_source")
    scene = load_scene(scene_row.source_path, depth_file=scene_row.depth_path,
                       depth_backend=None if backend == "file" else backend,
                       models_dir=str(ctx.resident.models_dir) if ctx.resident.models_dir else None,
                       options=options, progress=ctx.sub("recon", 0.0, 0.5), should_cancel=ctx.should_cancel)
    ctx.check_cancel()

    scene_dir = ctx.artefacts.scene_dir(scene_row.id)
    ctx.progress(0.5, "save")
    with atomic_path(scene_dir / SCENE_ARRAYS) as tmp:
        scene.save(tmp)
    ctx.check_cancel()

    ctx.progress(0.6, "package")
    meshes = build_meshes(scene)
    ctx.check_cancel()
    with atomic_path(scene_dir / SCENE_PACKAGE) as tmp:
        write_scene_package(scene, tmp, meshes, scene_id=scene_row.id)
    ctx.resident.scene(scene_row.id, lambda: scene)
    return {
        "width": scene.width, "height": scene.height, "fps": scene.fps, "num_frames": scene.num_frames,
        "K": scene.K.tolist(), "intrinsics_source": scene.intrinsics.source,
        "depth_source": scene.depth_source, "depth_units": scene.depth_units, "scene_scale": scene.scene_scale,
        "only_first_frame": scene.options.only_first_frame,
        "source_trajectory": source_trajectory(scene).to_dict(),
    }


def run_generate(ctx: JobContext) -> None:
    """Render the conditioning along the trajectory, run the generator, write the result."""
    from ex4d_engine.generation.base import GenerationRequest
    from ex4d_engine.pipeline import Scene, render_conditioning, save_conditioning
    from ex4d_engine.video_io import write_video

    job = ctx.job
    options = job.options
    ctx.progress(0.0, "load")
    scene_path = ctx.artefacts.existing(ctx.artefacts.scene_dir(job.scene_id) / SCENE_ARRAYS, "scene arrays")
    scene = ctx.resident.scene(job.scene_id, lambda: Scene.load(scene_path))
    trajectory = Trajectory.from_dict(json.loads(ctx.store.trajectory_json(job.id)))
    ctx.check_cancel()

    conditioning = render_conditioning(scene, trajectory, progress=ctx.sub("render", 0.02, 0.3),
                                       should_cancel=ctx.should_cancel)
    job_dir = ctx.artefacts.job_dir(job.id, create=True)
    ctx.progress(0.3, "write conditioning")
    with atomic_path(job_dir / CONDITIONING_VIDEOS["colour"]) as colour_tmp, \
            atomic_path(job_dir / CONDITIONING_VIDEOS["mask"]) as mask_tmp:
        save_conditioning(conditioning, trajectory.fps, colour_tmp, mask_tmp)
    ctx.check_cancel()

    generator = ctx.resident.generator(options.get("generator", "draft"), options.get("profile"), options.get("speed"))
    request = GenerationRequest(
        colour=conditioning.colour, mask=conditioning.mask, fps=trajectory.fps, seed=int(options.get("seed", 0)),
        steps=options.get("steps"), prompt=options.get("prompt"), negative_prompt=options.get("negative_prompt"),
        profile=options.get("profile"), speed=options.get("speed"),
    )
    video = generator.generate(request, progress=ctx.sub("generate", 0.35, 0.95), should_cancel=ctx.should_cancel)
    ctx.check_cancel()

    ctx.progress(0.95, "write")
    with atomic_path(job_dir / RESULT_VIDEO) as tmp:
        write_video(tmp, video, trajectory.fps)

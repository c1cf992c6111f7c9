"""What a job does with the engine: ``recon`` (clip -> Scene + package) and ``generate``
(scene + trajectory -> conditioning -> generator -> result). Runs in the worker process only.

Every artefact is written under a temporary name and renamed into place (``atomic_path``);
the API serves final names only.
"""

from __future__ import annotations

import json
from typing import Any

from ex4d_engine.contract import Trajectory
from ex4d_engine.protocol import GENERATORS, JobOptions, SceneMetadata, SceneOptions

from .artefacts import CONDITIONING_VIDEOS, RESULT_VIDEO, SCENE_ARRAYS, SCENE_PACKAGE, atomic_path
from .job_context import JobContext


def run_recon(ctx: JobContext) -> dict[str, Any]:
    """Reconstruct the job's scene; returns the metadata stored on the scene row."""
    from ex4d_engine.pipeline import ReconOptions, build_meshes, load_scene, source_trajectory, write_scene_package

    scene_row = ctx.store.get_scene(ctx.job.scene_id)
    opts = SceneOptions.from_dict(scene_row.options, "scene options")
    options = ReconOptions(num_frames=opts.num_frames, only_first_frame=opts.only_first_frame,
                           fov_deg=opts.fov_deg, focal_px=opts.focal_px)
    backend = opts.depth_source
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
    metadata = SceneMetadata(
        width=scene.width, height=scene.height, fps=scene.fps, num_frames=scene.num_frames, K=scene.K.tolist(),
        depth_source=scene.depth_source, intrinsics_source=scene.intrinsics.source, depth_units=scene.depth_units,
        scene_scale=scene.scene_scale, only_first_frame=scene.options.only_first_frame)
    return {**metadata.to_dict(), "source_trajectory": source_trajectory(scene).to_dict()}


def run_generate(ctx: JobContext) -> None:
    """Render the conditioning along the trajectory, run the generator, write the result."""
    from ex4d_engine.generation.base import GenerationRequest
    from ex4d_engine.pipeline import Scene, generation_geometry, render_conditioning, save_conditioning
    from ex4d_engine.video_io import write_video

    job = ctx.job
    options = JobOptions.from_dict(job.options, "job options")
    ctx.progress(0.0, "load")
    scene_path = ctx.artefacts.existing(ctx.artefacts.scene_dir(job.scene_id) / SCENE_ARRAYS, "scene arrays")
    scene = ctx.resident.scene(job.scene_id, lambda: Scene.load(scene_path))
    trajectory = Trajectory.from_dict(json.loads(ctx.store.trajectory_json(job.id)))
    ctx.check_cancel()

    is_draft = GENERATORS[options.generator].preview
    conditioning = render_conditioning(scene, trajectory, preview=is_draft, progress=ctx.sub("render", 0.02, 0.3),
                                       should_cancel=ctx.should_cancel)
    if is_draft:  # the conditioning video shows what the preview was filled from: the faithful colour
        conditioning = conditioning.as_preview()
    if options.stereo is not None:  # both eyes; the mono conditioning above stays the rig camera's preview
        from .stereo_task import run_generate_stereo

        return run_generate_stereo(ctx, scene, trajectory, conditioning)
    job_dir = ctx.artefacts.job_dir(job.id, create=True)
    ctx.progress(0.3, "write conditioning")
    with atomic_path(job_dir / CONDITIONING_VIDEOS["colour"]) as colour_tmp, \
            atomic_path(job_dir / CONDITIONING_VIDEOS["mask"]) as mask_tmp:
        save_conditioning(conditioning, trajectory.fps, colour_tmp, mask_tmp)
    ctx.check_cancel()

    generator = ctx.resident.generator(options.generator, options.profile, options.speed)
    request = GenerationRequest(  # the draft preview gets the faithful colour and the shot's geometry
        colour=conditioning.colour, mask=conditioning.mask,
        fps=trajectory.fps, seed=options.seed, steps=options.steps, prompt=options.prompt,
        negative_prompt=options.negative_prompt, profile=options.profile, speed=options.speed,
        geometry=generation_geometry(scene, trajectory) if is_draft else None,
    )
    video = generator.generate(request, progress=ctx.sub("generate", 0.35, 0.95), should_cancel=ctx.should_cancel)
    ctx.check_cancel()

    ctx.progress(0.95, "write")
    with atomic_path(job_dir / RESULT_VIDEO) as tmp:
        write_video(tmp, video, trajectory.fps)

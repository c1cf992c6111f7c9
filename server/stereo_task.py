"""A stereo ``generate`` job: both eyes of the job's camera (options.stereo), packed into result.mp4.

``result.mp4`` is the packed layout asked for (with the st3d box); the two eye videos are kept beside
it as ``result_left.mp4`` and ``result_right.mp4`` (``EYE_VIDEOS``, served at ``/v1/jobs/{id}/result/left``
and ``.../right``). The rig camera's own conditioning is written as for a mono job, so the conditioning
URLs keep working.
"""

from __future__ import annotations

from ex4d_engine.protocol import JobOptions

from .artefacts import CONDITIONING_VIDEOS, EYE_VIDEOS, RESULT_VIDEO, atomic_path
from .job_context import JobContext


def run_generate_stereo(ctx: JobContext, scene, trajectory, conditioning) -> None:
    from ex4d_engine.pipeline import save_conditioning
    from ex4d_engine.stereo import generate_stereo, scene_stereo_trajectories
    from ex4d_engine.stereo_rig import StereoRig
    from ex4d_engine.stereo_video import ST3D_MODE, add_st3d, pack
    from ex4d_engine.video_io import write_video

    job = ctx.job
    options = JobOptions.from_dict(job.options, "job options")
    stereo = options.stereo
    rig = StereoRig(stereo.interocular, stereo.convergence, stereo.mode, stereo.pivot, stereo.sensor_ratio)
    eyes = scene_stereo_trajectories(scene, trajectory, rig)  # InputError for an absurd rig
    job_dir = ctx.artefacts.job_dir(job.id, create=True)
    with atomic_path(job_dir / CONDITIONING_VIDEOS["colour"]) as colour_tmp, \
            atomic_path(job_dir / CONDITIONING_VIDEOS["mask"]) as mask_tmp:
        save_conditioning(conditioning, trajectory.fps, colour_tmp, mask_tmp)
    ctx.check_cancel()
    generator = ctx.resident.generator(options.generator, options.profile, options.speed)
    shot = generate_stereo(scene, eyes, generator, mode=stereo.generation, seed=options.seed, steps=options.steps,
                           prompt=options.prompt, negative_prompt=options.negative_prompt, profile=options.profile,
                           speed=options.speed,
                           progress=ctx.sub("stereo", 0.35, 0.95), should_cancel=ctx.should_cancel)
    ctx.check_cancel()
    ctx.progress(0.95, "write")
    for eye, name in EYE_VIDEOS.items():
        with atomic_path(job_dir / name) as tmp:
            write_video(tmp, shot.eye(eye), trajectory.fps)
    layout = stereo.layout
    with atomic_path(job_dir / RESULT_VIDEO) as tmp:
        write_video(tmp, pack(shot.left, shot.right, layout), trajectory.fps)
        add_st3d(tmp, ST3D_MODE[layout])

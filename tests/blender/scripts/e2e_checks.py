"""End-to-end inside Blender against a real ``ex4d serve`` on loopback (draft generator).

Args: --zip EXTENSION_ZIP --url URL --token TOKEN --video CLIP --depth DEPTH_NPY --num-frames N
      --engine-python PYTHON (for 'Start local engine': PYTHON -m ex4d_engine.cli serve) --workdir DIR
Prints EX4D_RESULT {check name: {"ok", "value" | "error", "s"}}.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bpy_harness as h  # noqa: E402

import bpy  # noqa: E402

ZIP, URL, TOKEN = h.arg("zip"), h.arg("url"), h.arg("token")
VIDEO, DEPTH, NUM_FRAMES = h.arg("video"), h.arg("depth"), int(h.arg("num-frames"))
DEPTH_PNG = h.arg("depth-png")
ENGINE_PYTHON, WORKDIR = h.arg("engine-python"), h.arg("workdir")
addon = h.install_addon(ZIP)
prefs = bpy.context.preferences.addons[addon.__name__].preferences
prefs.engine_url, prefs.timeout_s = URL, 30.0


def call(op, **kwargs):
    """Background bpy raises RuntimeError when an operator reported an ERROR: return that text."""
    try:
        return sorted(op(**kwargs))
    except RuntimeError as exc:
        return ["ERROR", str(exc)]


def wait():
    addon.jobs.wait_all(addon.takes.apply_message, timeout_s=240)


def take_state(take):
    return {"name": take.name, "status": take.status, "message": take.message, "job_id": take.job_id,
            "result_exists": bool(take.result_path) and os.path.exists(take.result_path),
            "frames": [take.frame_start, take.frame_end]}


def check_bad_token():
    prefs.token = "wrong-token"
    connection = call(bpy.ops.ex4d.test_connection)
    return {"connection": connection, "verdict": prefs.connection_verdict}


def check_connection():
    prefs.token = TOKEN
    return {"connection": call(bpy.ops.ex4d.test_connection), "verdict": prefs.connection_verdict,
            "short": prefs.connection_short, "state": prefs.connection_state}


def check_import_video():
    scene = bpy.context.scene
    result = call(bpy.ops.ex4d.import_video, filepath=VIDEO, depth_path=DEPTH, num_frames=NUM_FRAMES)
    wait()
    collection = scene.ex4d.scene_collection
    return {"result": result, "import_status": scene.ex4d.import_status,
            "collection": collection.name if collection else None,
            "scene_id": collection["ex4d_scene_id"] if collection else None,
            "frame_range": [scene.frame_start, scene.frame_end],
            "resolution": [scene.render.resolution_x, scene.render.resolution_y],
            "num_vertices": len(collection["ex4d_mesh"].data.vertices) if collection else 0}


def check_generate():
    scene = bpy.context.scene
    shot = scene.camera
    shot.keyframe_insert("location", frame=scene.frame_start)
    shot.location.x += 0.15
    shot.keyframe_insert("location", frame=scene.frame_end)
    scene.ex4d.want_conditioning = True
    result = call(bpy.ops.ex4d.generate)
    scene.ex4d.want_conditioning = False
    take = scene.ex4d.takes[scene.ex4d.active_take]
    key = take.key
    wait()
    take = addon.takes.find_take(scene, key)
    strips = addon.sequencer.strips_of_take(addon.sequencer.sequencer_scene(bpy.context), key)
    main = [s for s in strips if not s.get("ex4d_conditioning")]
    strip = main[0] if main else None
    conditioning = {s.get("ex4d_conditioning"): [s.channel, s.frame_final_start, s.frame_final_duration, s.mute]
                    for s in strips if s.get("ex4d_conditioning")}
    return {"result": result, "take": take_state(take),
            "strip": None if strip is None else {
                "name": strip.name, "type": strip.type, "channel": strip.channel,
                "start": strip.frame_final_start, "end": strip.frame_final_end,
                "duration": strip.frame_final_duration, "job_id": strip.get("ex4d_job_id"),
                "warning": strip.get("ex4d_warning"), "file_frames": strip.get("ex4d_file_frames")},
            "scene_range": [scene.frame_start, scene.frame_end], "conditioning": conditioning,
            "labels": {s.name: bool(s.get("ex4d_preview")) for s in strips},
            "colour_path": bpy.path.abspath(take.conditioning_colour_path),
            "trajectory_path": bpy.path.abspath(take.trajectory_path), "scene_id": take.scene_id}


def _video_size(path: str):
    """[width, height, frames] of a movie file as Blender opens it, or None when there is no such file."""
    if not path or not os.path.isfile(path):
        return None
    clip = bpy.data.movieclips.load(path)
    try:
        return [clip.size[0], clip.size[1], clip.frame_duration]
    finally:
        bpy.data.movieclips.remove(clip)


def check_stereo_take():
    """A stereo take from the scene camera's stereo rig: refused while stereoscopy is off, then a Stereo 3D strip."""
    scene = bpy.context.scene
    scene.ex4d.stereo, scene.ex4d.stereo_layout = True, "tb"
    refused = call(bpy.ops.ex4d.generate)  # stereoscopy is off: say how to turn it on, no take
    takes_before = len(scene.ex4d.takes)
    scene.render.use_multiview, scene.render.views_format = True, "STEREO_3D"
    scene.camera.data.stereo.interocular_distance = 0.02
    scene.camera.data.stereo.convergence_distance = 2.0
    result = call(bpy.ops.ex4d.generate)
    take = scene.ex4d.takes[scene.ex4d.active_take]
    key = take.key
    wait()
    take = addon.takes.find_take(scene, key)
    strips = addon.sequencer.strips_of_take(addon.sequencer.sequencer_scene(bpy.context), key)
    strip = strips[0] if strips else None
    scene.ex4d.stereo = False
    scene.render.use_multiview = False
    return {"refused": refused, "takes_before": takes_before, "result": result, "take": take_state(take),
            "record": addon.stereo.take_stereo(take), "line": addon.takes.describe(take),
            "eyes": {eye: _video_size(bpy.path.abspath(addon.stereo.take_stereo(take).get(f"{eye}_path", "")))
                     for eye in ("left", "right")},
            "packed": _video_size(bpy.path.abspath(take.result_path)),
            "strip": None if strip is None else {
                "multiview": strip.use_multiview, "views_format": strip.views_format,
                "display_mode": strip.stereo_3d_format.display_mode}}


def check_resume_after_reload():
    """A take saved while its job ran (no worker thread after reopening) is followed again by Resume."""
    scene = bpy.context.scene
    done = next(t for t in scene.ex4d.takes if t.status == "succeeded")
    client = addon.client.EngineClient(URL, TOKEN)
    trajectory = addon._engine.contract.Trajectory.load(bpy.path.abspath(done.trajectory_path))
    job_id = client.submit_job(done.scene_id, trajectory.to_dict(),
                               addon._engine.protocol.JobOptions(generator="draft", seed=5))
    take = addon.takes.new_take(scene, "resumed0001")
    take.job_id, take.scene_id, take.status = job_id, done.scene_id, "running"
    take.frame_start, take.frame_end, take.generator, take.seed = done.frame_start, done.frame_end, "draft", 5
    result = call(bpy.ops.ex4d.take_resume)
    wait()
    take = addon.takes.find_take(scene, "resumed0001")
    strips = addon.sequencer.strips_of_take(scene, "resumed0001")
    return {"result": result, "take": take_state(take), "strips": len(strips),
            "again": call(bpy.ops.ex4d.take_resume)}


def check_cancel():
    """Two jobs in the FIFO: cancel the second while the first runs, it never starts."""
    scene = bpy.context.scene
    call(bpy.ops.ex4d.generate)
    first = scene.ex4d.takes[scene.ex4d.active_take].key
    call(bpy.ops.ex4d.generate)
    second = scene.ex4d.takes[scene.ex4d.active_take].key
    cancel = call(bpy.ops.ex4d.cancel)
    wait()
    return {"cancel": cancel, "first": take_state(addon.takes.find_take(scene, first)),
            "second": take_state(addon.takes.find_take(scene, second)),
            "second_strips": len(addon.sequencer.strips_of_take(scene, second))}


def check_regenerate_and_compare():
    scene = bpy.context.scene
    done = [i for i, t in enumerate(scene.ex4d.takes) if t.status == "succeeded"]
    scene.ex4d.active_take = done[0]
    result = call(bpy.ops.ex4d.regenerate)
    new_key = scene.ex4d.takes[scene.ex4d.active_take].key
    wait()
    new = addon.takes.find_take(scene, new_key)
    show = call(bpy.ops.ex4d.take_show, index=done[0])
    muted = {s.get("ex4d_take"): s.mute for s in addon.sequencer.all_strips(scene)
             if s.get("ex4d_take") and not s.get("ex4d_conditioning")}
    return {"result": result, "take": take_state(new), "seed": [scene.ex4d.takes[done[0]].seed, new.seed],
            "show": show, "shown_unmuted": muted.get(scene.ex4d.takes[done[0]].key) is False,
            "new_muted": muted.get(new_key) is True}


def check_bad_token_generate():
    """Generate checks the engine first: a wrong token is an error at once, and no failed take piles up."""
    scene = bpy.context.scene
    prefs.token = "wrong-token"
    before = len(scene.ex4d.takes)
    result = call(bpy.ops.ex4d.generate)
    added = len(scene.ex4d.takes) - before
    state = prefs.connection_state
    prefs.token = TOKEN
    return {"result": result, "takes_added": added, "state": state}


def vertex_depths(collection):
    mesh = collection["ex4d_mesh"].data
    return sorted({round(v.co.z, 3) for v in mesh.vertices})[:8]


def check_import_video_png_depth():
    """'From video' with a folder of 16-bit PNG depth (millimetres), as `ex4d recon` takes it."""
    scene = bpy.context.scene
    result = call(bpy.ops.ex4d.import_video, filepath=VIDEO, depth_path=DEPTH_PNG, num_frames=NUM_FRAMES)
    wait()
    collection = scene.ex4d.scene_collection
    return {"result": result, "collection": collection.name, "scene_id": collection["ex4d_scene_id"],
            "depth_range": vertex_depths(collection)}


def check_send_file_scene_to_engine():
    """A package imported from a file: Generate says what to do; 'Send scene to engine' makes it work."""
    import json
    import zipfile

    scene = bpy.context.scene
    package = os.path.join(WORKDIR, "from_file.ex4dscene.zip")  # like `ex4d demo`'s: no engine scene id
    with zipfile.ZipFile(scene.ex4d.scene_collection["ex4d_package"]) as source, \
            zipfile.ZipFile(package, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "scene.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "scene_id"}).encode()
            out.writestr(item, data)
    imported = call(bpy.ops.ex4d.import_scene, filepath=package)
    collection = scene.ex4d.scene_collection
    before = len(scene.ex4d.takes)
    refused = call(bpy.ops.ex4d.generate)
    added_by_refusal = len(scene.ex4d.takes) - before
    sent = call(bpy.ops.ex4d.upload_scene)
    wait()
    scene_id = collection.get("ex4d_scene_id", "")
    generated = call(bpy.ops.ex4d.generate)
    take_key = scene.ex4d.takes[scene.ex4d.active_take].key
    wait()
    take = addon.takes.find_take(scene, take_key)
    return {"imported": imported, "refused": refused, "added_by_refusal": added_by_refusal,
            "sent": sent, "scene_id": scene_id, "generated": generated, "take": take_state(take),
            "depth_range": vertex_depths(collection)}


def check_takes_next_to_the_blend():
    """Takes are written under the .blend's folder (//ex4d/takes/...) and stored //-relative."""
    scene = bpy.context.scene
    project = os.path.join(WORKDIR, "project")
    os.makedirs(project, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(project, "shot.blend"))
    scene = bpy.context.scene
    result = call(bpy.ops.ex4d.generate)
    key = scene.ex4d.takes[scene.ex4d.active_take].key
    wait()
    take = addon.takes.find_take(scene, key)
    return {"result": result, "status": take.status, "result_path": take.result_path,
            "trajectory_path": take.trajectory_path,
            "exists": os.path.isfile(os.path.join(project, "ex4d", "takes", key, "shot.mp4"))}


def check_start_local_engine():
    """Preferences > Start local engine: `ex4d serve` on a free port; the token is read from its data dir."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    saved = prefs.engine_url, prefs.token
    prefs.engine_url, prefs.token = f"http://127.0.0.1:{port}", ""
    prefs.engine_command = f"{ENGINE_PYTHON} -m ex4d_engine.cli"
    prefs.engine_data_dir = os.path.join(WORKDIR, "local-engine")
    try:
        started = call(bpy.ops.ex4d.start_engine)
        deadline, connection = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            connection = call(bpy.ops.ex4d.test_connection)
            if connection == ["FINISHED"]:
                break
            time.sleep(0.5)
        verdict = prefs.connection_verdict
        running = addon.prefs.local_engine_running()
        call(bpy.ops.ex4d.stop_engine)
        log = os.path.join(addon.prefs.user_dir("logs"), "engine.log")
        return {"started": started, "connection": connection, "verdict": verdict, "running": running,
                "stopped": not addon.prefs.local_engine_running(), "log_exists": os.path.getsize(log) > 0}
    finally:
        prefs.engine_url, prefs.token = saved


h.emit(h.run_checks({
    "bad_token": check_bad_token,
    "connection": check_connection,
    "import_video": check_import_video,
    "generate": check_generate,
    "stereo_take": check_stereo_take,
    "resume_after_reload": check_resume_after_reload,
    "cancel": check_cancel,
    "regenerate_and_compare": check_regenerate_and_compare,
    "bad_token_generate": check_bad_token_generate,
    "import_video_png_depth": check_import_video_png_depth,
    "send_file_scene": check_send_file_scene_to_engine,
    "takes_next_to_blend": check_takes_next_to_the_blend,
    "start_local_engine": check_start_local_engine,
}))

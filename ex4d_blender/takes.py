"""Takes: one generated shot each, stored in the .blend (scene property), so they survive save/reload.

Also the main-thread side of :mod:`jobs`: :func:`apply_message` turns worker messages into take
updates, VSE strips and UI reports, and :func:`ensure_timer` keeps a ``bpy.app.timers`` tick
polling while work runs.
"""

import os

import bpy

from . import jobs, sequencer

TERMINAL = ("succeeded", "failed", "cancelled")
GENERATORS = [("draft", "Draft", "OpenCV inpainting: seconds, no model weights"),
              ("wan", "Wan 2.1", "Wan2.1 + EX-4D adapter: needs the weights and a GPU on the engine")]
TIMER_INTERVAL_S = 0.2
#: The engine's speed presets (ex4d_engine/generation/wan/speed.py; a test keeps the two in step) and the
#: warm seconds per 49-frame 512x512 shot on one Hopper GPU (exact/original measured, the rest estimated:
#: docs/PERFORMANCE.md, ## Speed presets).
SPEED_PRESETS = {
    "default": (42.0, "FP8 linears, 25 steps, CFG 5 (time estimated)"),
    "exact": (43.0, "the seed's sampling in bf16, 25 steps, CFG 5"),
    "original": (53.0, "exact with EX-4D's fp32 DiffSynth paths (reference)"),
    "fast": (17.0, "FP8 + MagCache step reuse (time estimated)"),
    "turbo": (6.0, "4-step distill LoRA, no CFG (time estimated); its quality with the EX-4D LoRA is NOT verified"),
}
SPEEDS = [(name, f"{name.capitalize()} (~{seconds:.0f} s)", f"{text}; about {seconds:.0f} s per shot on an H100/H200")
          for name, (seconds, text) in SPEED_PRESETS.items()]


class EX4D_Take(bpy.types.PropertyGroup):
    key: bpy.props.StringProperty()
    job_id: bpy.props.StringProperty()
    scene_id: bpy.props.StringProperty()
    engine_url: bpy.props.StringProperty()
    status: bpy.props.StringProperty(default="new")  # new, queued, running, succeeded, failed, cancelled
    stage: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    eta_s: bpy.props.FloatProperty(default=-1.0)
    message: bpy.props.StringProperty()
    generator: bpy.props.StringProperty()
    seed: bpy.props.IntProperty()
    steps: bpy.props.IntProperty()
    speed: bpy.props.StringProperty()
    prompt: bpy.props.StringProperty()
    camera: bpy.props.StringProperty()
    frame_start: bpy.props.IntProperty()
    frame_end: bpy.props.IntProperty()
    fps: bpy.props.FloatProperty()
    trajectory_path: bpy.props.StringProperty(subtype="FILE_PATH")
    result_path: bpy.props.StringProperty(subtype="FILE_PATH")
    conditioning_colour_path: bpy.props.StringProperty(subtype="FILE_PATH")
    conditioning_mask_path: bpy.props.StringProperty(subtype="FILE_PATH")
    want_conditioning: bpy.props.BoolProperty()


class EX4D_SceneSettings(bpy.types.PropertyGroup):
    scene_collection: bpy.props.PointerProperty(type=bpy.types.Collection, name="EX-4D scene",
                                                 description="The imported EX-4D collection the shot is filmed in")
    shot_camera: bpy.props.PointerProperty(type=bpy.types.Object, name="Shot camera",
                                           poll=lambda _self, obj: obj.type == "CAMERA",
                                           description="Camera to send (empty: the scene camera)")
    generator: bpy.props.EnumProperty(name="Generator", items=GENERATORS, default="draft")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    steps: bpy.props.IntProperty(name="Steps", default=0, min=0, description="Diffusion steps (0: engine default)")
    prompt: bpy.props.StringProperty(name="Prompt", default="")
    profile: bpy.props.StringProperty(name="Profile", default="", description="Engine memory profile (empty: default)")
    speed: bpy.props.EnumProperty(name="Speed", items=SPEEDS, default="default",
                                  description="Wan speed preset (the draft generator ignores it)")
    want_conditioning: bpy.props.BoolProperty(
        name="Conditioning strips", default=False,
        description="Also load the engine's masked colour render and visibility mask as strips")
    takes: bpy.props.CollectionProperty(type=EX4D_Take)
    active_take: bpy.props.IntProperty(name="Take", default=0)
    import_key: bpy.props.StringProperty()  # running video-upload import, if any
    import_status: bpy.props.StringProperty()


def find_take(scene, key: str):
    for take in scene.ex4d.takes:
        if take.key == key:
            return take
    return None


def new_take(scene, key: str) -> "EX4D_Take":
    take = scene.ex4d.takes.add()
    take.key = key
    take.name = f"Take {len(scene.ex4d.takes)}"
    scene.ex4d.active_take = len(scene.ex4d.takes) - 1
    return take


def describe(take) -> str:
    """One line for the panel and the status bar."""
    if take.status in ("queued", "running", "submitting"):
        eta = f", {take.eta_s:.0f} s left" if take.eta_s >= 0 else ""
        return f"{take.name}: {take.stage or take.status} {take.progress * 100:.0f}%{eta}"
    if take.status == "succeeded":
        return f"{take.name}: done"
    return f"{take.name}: {take.status}" + (f" - {take.message}" if take.message else "")


# ---------------------------------------------------------------------- main thread
def apply_message(message: jobs.Message, scene_name: str | None) -> None:
    """Apply one worker message (main thread only)."""
    scene = bpy.data.scenes.get(scene_name) if scene_name else None
    if scene is None:
        return  # the scene went away (new file loaded): nothing to update
    if message.task_key == scene.ex4d.import_key:
        _apply_import_message(scene, message)
        return
    take = find_take(scene, message.task_key)
    if take is None:
        return
    data = message.data
    if message.kind == "submitted":
        take.job_id = data.get("job_id", "")
        take.status = "queued"
    elif message.kind == "progress":
        take.status = data.get("state") or take.status
        take.stage = data.get("stage", "")
        take.progress = min(max(float(data.get("progress") or 0.0), 0.0), 1.0)
        eta = data.get("eta_s")
        take.eta_s = float(eta) if eta is not None else -1.0
    elif message.kind == "succeeded":
        take.status, take.progress, take.stage, take.message = "succeeded", 1.0, "done", ""
        take.result_path = data["result_path"]
        conditioning = data.get("conditioning") or {}
        take.conditioning_colour_path = conditioning.get("colour", "")
        take.conditioning_mask_path = conditioning.get("mask", "")
        try:
            strip = load_strips(scene, take)
        except Exception as exc:  # e.g. no free channel, unreadable file
            take.message = f"Generated, but the strip could not be added: {exc}"
            _report("WARNING", f"EX-4D {take.name}: {take.message}")
        else:
            warning = strip.get("ex4d_warning", "")
            take.message = warning
            _report("WARNING" if warning else "INFO",
                    f"EX-4D {take.name} done: strip '{strip.name}' on channel {strip.channel}"
                    + (f" ({warning})" if warning else ""))
    elif message.kind in ("failed", "cancelled"):
        take.status = message.kind
        take.message = data.get("message", "")
        _report("ERROR" if message.kind == "failed" else "INFO", f"EX-4D {take.name}: {take.message}")
    _status_bar(describe(take) if take.status not in TERMINAL else None)
    _redraw()


def _apply_import_message(scene, message: jobs.Message) -> None:
    from . import mesh_import, prefs

    data = message.data
    settings = scene.ex4d
    if message.kind == "progress":
        settings.import_status = f"{data.get('stage') or data.get('state')}: {float(data.get('progress') or 0) * 100:.0f}%"
    elif message.kind == "submitted":
        settings.import_status = f"scene {data.get('scene_id')} queued"
    elif message.kind == "scene_ready":
        settings.import_key = ""
        try:
            collection = mesh_import.import_package(scene, data["package_path"], prefs.data_dir(),
                                                    scene_id=data["scene_id"], engine_url=data["url"])
        except Exception as exc:
            settings.import_status = f"import failed: {exc}"
            _report("ERROR", f"EX-4D import failed: {exc}")
        else:
            settings.scene_collection = collection
            settings.import_status = ""
            _report("INFO", f"EX-4D scene imported as '{collection.name}'")
    elif message.kind in ("failed", "cancelled"):
        settings.import_key = ""
        settings.import_status = "" if message.kind == "cancelled" else f"failed: {data.get('message', '')}"
        _report("ERROR" if message.kind == "failed" else "INFO", f"EX-4D import: {data.get('message', '')}")
    _status_bar(f"EX-4D import {settings.import_status}" if settings.import_key else None)
    _redraw()


def load_strips(scene, take):
    """Insert the take's result (and conditioning videos, if fetched) as movie strips; returns the main strip."""
    target = sequencer.sequencer_scene(bpy.context) if bpy.context.scene == scene else scene
    for old in sequencer.strips_of_take(target, take.key):
        sequencer.remove_strip(target, old)
    num_frames = take.frame_end - take.frame_start + 1
    metadata = {"take": take.key, "job_id": take.job_id, "scene_id": take.scene_id, "engine_url": take.engine_url,
                "generator": take.generator, "seed": take.seed, "steps": take.steps, "prompt": take.prompt,
                "camera": take.camera}
    strip = sequencer.add_movie_strip(target, bpy.path.abspath(take.result_path), take.name, take.frame_start,
                                      num_frames, metadata)
    for kind, path in (("colour", take.conditioning_colour_path), ("mask", take.conditioning_mask_path)):
        if path:
            extra = sequencer.add_movie_strip(target, bpy.path.abspath(path), f"{take.name} {kind}",
                                              take.frame_start, num_frames, {**metadata, "conditioning": kind},
                                              channel=sequencer.free_channel(target, take.frame_start,
                                                                             take.frame_end, strip.channel + 1))
            extra.mute = True  # reference material: visible in the timeline, not in the cut
    return strip


def _report(level: str, text: str) -> None:
    """Queue a UI report through the message operator (operators are the only ones that report)."""
    try:
        bpy.ops.ex4d.show_message(level=level, message=text)
    except (RuntimeError, AttributeError):
        print(f"EX-4D {level}: {text}")


def _status_bar(text: str | None) -> None:
    workspace = getattr(bpy.context, "workspace", None)
    if workspace is not None:
        try:
            workspace.status_text_set(text)
        except (RuntimeError, TypeError):
            pass


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            area.tag_redraw()


def poll_jobs() -> bool:
    """One main-thread poll (what the timer does; tests call it directly). True while work remains."""
    return jobs.poll(apply_message)


def _tick():
    return TIMER_INTERVAL_S if poll_jobs() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


def result_dir(take_key: str) -> str:
    from . import prefs

    path = os.path.join(prefs.data_dir(), "takes", take_key)
    os.makedirs(path, exist_ok=True)
    return path

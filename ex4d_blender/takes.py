"""Takes: one generated shot each, stored in the .blend (scene property), so they survive save/reload.

Also the main-thread side of :mod:`jobs`: :func:`apply_message` turns worker messages into take
updates, VSE strips and reports (status bar + Info log through ``reporting.notify``), and
:func:`ensure_timer` keeps a ``bpy.app.timers`` tick polling while work runs.

Files: takes and imported scenes go to the scene's *Output* folder (default ``//ex4d/``, next to the
.blend, like render output); an unsaved file uses the add-on's data folder. Paths are stored
``//``-relative where possible; takes written by older versions keep their absolute paths.
"""

import os

import bpy

from . import jobs, sequencer
from ._engine.protocol import DEFAULT_GENERATOR, DEFAULT_SPEED, GENERATORS as PROTOCOL_GENERATORS, SPEED_PRESETS, TakeState
from ._engine.protocol import is_preview_generator
from .reporting import describe as describe_error, notify

TERMINAL = tuple(state.value for state in TakeState if state.terminal)
RUNNING = tuple(state.value for state in TakeState if not state.terminal)  # new (being sent), queued, running
GENERATORS = [(spec.name, spec.label, spec.description) for spec in PROTOCOL_GENERATORS.values()]
TIMER_INTERVAL_S = 0.2
DEFAULT_OUTPUT = "//ex4d/"
#: The speed presets of the Wan generator with their expected time (protocol.SPEED_PRESETS).
SPEEDS = [(spec.name, spec.label, f"{spec.summary}; about {spec.expected_s:.0f} s per 49-frame 512x512 shot on one "
           f"Hopper GPU ({'measured' if spec.measured else 'estimated'})") for spec in SPEED_PRESETS.values()]


class EX4D_Take(bpy.types.PropertyGroup):
    key: bpy.props.StringProperty()
    job_id: bpy.props.StringProperty()
    scene_id: bpy.props.StringProperty()
    engine_url: bpy.props.StringProperty()
    status: bpy.props.StringProperty(default=TakeState.new.value)  # a protocol.TakeState value
    stage: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=100.0, subtype="PERCENTAGE", precision=0)
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
    stereo: bpy.props.BoolProperty(
        name="Stereo", default=False,
        description="A VR stereo take: both eyes of the scene camera's stereo rig (Camera Properties > "
                    "Stereoscopy; Output Properties > Views > Stereo 3D), consistent, as a Stereo 3D strip")
    stereo_layout: bpy.props.EnumProperty(
        name="Layout", default="sbs", description="How the two eyes are packed in the video",
        items=[("sbs", "Side by side", "full width per eye"), ("sbs_half", "Side by side (half)", "squeezed"),
               ("tb", "Top-bottom", "left eye on top")])
    output_dir: bpy.props.StringProperty(
        name="Output", subtype="DIR_PATH", default=DEFAULT_OUTPUT,
        description="Where takes and imported scenes are written; // is the .blend's folder "
                    "(an unsaved file uses the add-on's data folder)")
    generator: bpy.props.EnumProperty(name="Generator", items=GENERATORS, default=DEFAULT_GENERATOR)
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


#: Progress of running work, by task key: (stage, percent, eta_s). Main thread only; never saved.
LIVE: dict[str, tuple[str, float, float]] = {}


def _percent(data: dict) -> float:
    return 100.0 * min(max(float(data.get("progress") or 0.0), 0.0), 1.0)


def live_progress(key: str, stage: str = "", percent: float = 0.0, eta_s: float = -1.0) -> tuple[str, float, float]:
    """(stage, percent, eta_s) of running work; the given values when nothing is running under ``key``."""
    return LIVE.get(key, (stage, percent, eta_s))


def take_progress(take) -> tuple[str, float, float]:
    return live_progress(take.key, take.stage or take.status, take.progress, take.eta_s)


def generator_label(generator: str) -> str:
    """How takes and strips name the generator: a preview says so (``draft preview``)."""
    return f"{generator} preview" if is_preview_generator(generator) else generator


def is_ex4d_collection(collection) -> bool:
    return collection is not None and "ex4d_axis_matrix" in collection and "ex4d_root" in collection


def shot_camera(scene):
    """The camera Generate films through: the scene camera (what the panel shows)."""
    return scene.camera


def output_dir(scene, *parts: str) -> str:
    """``<Output>/<parts>`` as an absolute folder (created)."""
    from . import prefs

    folder = scene.ex4d.output_dir or DEFAULT_OUTPUT
    if folder.startswith("//") and not bpy.data.filepath:
        base = prefs.data_dir()  # unsaved file: // has no folder yet
    else:
        base = bpy.path.abspath(folder)
    path = os.path.join(base, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def stored_path(path: str) -> str:
    """``//``-relative when the .blend is saved and the file is below its folder; else absolute."""
    if bpy.data.filepath:
        blend_dir = os.path.dirname(os.path.abspath(bpy.data.filepath))
        if os.path.abspath(path).startswith(blend_dir + os.sep):
            return bpy.path.relpath(path)
    return path


def result_dir(scene, take_key: str, take=None) -> str:
    """The take's folder: where its result already is (older takes: the add-on's data folder), else new."""
    if take is not None and take.trajectory_path:
        existing = os.path.dirname(bpy.path.abspath(take.trajectory_path))
        if os.path.isdir(existing):
            return existing
    return output_dir(scene, "takes", take_key)


def conditioning_paths(folder: str, wanted: bool) -> dict:
    return ({"colour": os.path.join(folder, "conditioning_colour.mp4"),
             "mask": os.path.join(folder, "conditioning_mask.mp4")} if wanted else {})


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
    if take.status in RUNNING:
        stage, percent, eta_s = take_progress(take)
        eta = f", {eta_s:.0f} s left" if eta_s >= 0 else ""
        return f"{take.name}: {stage or take.status} {percent:.0f}%{eta}"
    if take.status == "succeeded":
        stereo = take.get("stereo")
        return f"{take.name}: done" + (f" ({stereo['mode']} stereo, {stereo['layout']})" if stereo else "")
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
        # Progress lives in LIVE, not in the take's properties: every property write from Python makes
        # Blender redraw every window (and a software-rendered viewport stalls the main loop for seconds).
        # Properties change only with the state, so a saved .blend still knows where the take was.
        eta = data.get("eta_s")
        LIVE[take.key] = (str(data.get("stage") or ""), _percent(data), float(eta) if eta is not None else -1.0)
        if data.get("state") and data["state"] != take.status:
            take.status = data["state"]
    elif message.kind == "succeeded":
        LIVE.pop(take.key, None)
        take.status, take.progress, take.stage, take.message = "succeeded", 100.0, "done", ""
        take.result_path = stored_path(data["result_path"])
        conditioning = data.get("conditioning") or {}
        take.conditioning_colour_path = stored_path(conditioning["colour"]) if conditioning.get("colour") else ""
        take.conditioning_mask_path = stored_path(conditioning["mask"]) if conditioning.get("mask") else ""
        try:
            strip = load_strips(scene, take)
        except Exception as exc:  # noqa: BLE001 - e.g. no free channel, unreadable file: say so, keep the take
            _level, text, _bug = describe_error(exc)
            take.message = f"Generated, but the strip could not be added: {text}"
            _report("WARNING", f"EX-4D {take.name}: {take.message}")
        else:
            if take.get("stereo"):  # a packed stereo video: Blender's own stereo preview shows both eyes
                from . import stereo

                stereo.make_stereo_strip(strip, take["stereo"]["layout"])
                eyes = data.get("eyes") or {}
                stereo.record_eye_paths(take, {eye: stored_path(path) for eye, path in eyes.items()})
            warning = strip.get("ex4d_warning", "")
            take.message = warning
            _report("WARNING" if warning else "INFO",
                    f"EX-4D {take.name} done: strip '{strip.name}' on channel {strip.channel}"
                    + (f" ({warning})" if warning else ""))
    elif message.kind in ("failed", "cancelled"):
        stage, percent, _eta = LIVE.pop(take.key, (take.stage, take.progress, -1.0))
        take.status, take.stage, take.progress = message.kind, stage, percent
        take.message = data.get("message", "")
        _report("ERROR" if message.kind == "failed" else "INFO", f"EX-4D {take.name}: {take.message}")
        _note_connection(data)
    _status_bar(describe(take) if take.status not in TERMINAL else None)
    _redraw_progress()


def _apply_import_message(scene, message: "jobs.Message") -> None:
    data = message.data
    settings = scene.ex4d
    if message.kind == "progress":  # in LIVE only: see apply_message
        LIVE[message.task_key] = (str(data.get("stage") or data.get("state") or ""), _percent(data), -1.0)
    elif message.kind == "submitted":
        settings.import_status = "queued"
    elif message.kind == "scene_ready":
        settings.import_key = ""
        settings.import_status = ""
        if data.get("attach_to"):
            _attach_scene(scene, data)
        else:
            _import_ready_package(scene, data)
    elif message.kind in ("failed", "cancelled"):
        settings.import_key = ""
        settings.import_status = "" if message.kind == "cancelled" else "failed"
        _report("ERROR" if message.kind == "failed" else "INFO", f"EX-4D import: {data.get('message', '')}")
        _note_connection(data)
    if message.kind != "progress":
        LIVE.pop(message.task_key, None)
    stage, percent, _eta = live_progress(message.task_key, settings.import_status, 0.0)
    _status_bar(f"EX-4D import: {stage} {percent:.0f}%" if settings.import_key else None)
    _redraw_progress()


def _import_ready_package(scene, data: dict) -> None:
    try:
        from . import deps, mesh_import, viewport

        deps.require("numpy", "Importing the reconstructed scene")
        collection = mesh_import.import_package(scene, data["package_path"], output_dir(scene, "scenes"),
                                                scene_id=data["scene_id"], engine_url=data["url"],
                                                name=data.get("name", ""))
        viewport.setup_after_import(scene, collection)  # skirt hidden, views framed on the content
    except Exception as exc:  # noqa: BLE001 - reported (a bug with its traceback)
        scene.ex4d.import_status = "failed"
        _report("ERROR", describe_error(exc, "EX-4D import failed")[1])
        return
    scene.ex4d.scene_collection = collection
    _report("INFO", f"EX-4D scene imported as '{collection.name}'")


def _attach_scene(scene, data: dict) -> None:
    """A file-imported scene was sent to the engine: remember the engine's id (no second import)."""
    collection = bpy.data.collections.get(data["attach_to"])
    if collection is None:
        _report("ERROR", f"EX-4D: the collection '{data['attach_to']}' is gone; the engine's scene is "
                         f"{data['scene_id']}")
        return
    collection["ex4d_scene_id"] = data["scene_id"]
    collection["ex4d_engine_url"] = data["url"]
    mismatch = [f"{key} {data['engine_scene'].get(key)} vs {collection.get('ex4d_' + key)}"
                for key in ("width", "height", "num_frames")
                if key in (data.get("engine_scene") or {})
                and data["engine_scene"][key] != collection.get("ex4d_" + key)]
    if mismatch:
        _report("WARNING", f"EX-4D: the engine made '{collection.name}' with a different size ({', '.join(mismatch)})"
                           "; import its package with 'From video' to match it exactly")
    else:
        _report("INFO", f"EX-4D: the engine has '{collection.name}' (scene {data['scene_id']}): ready to Generate")


def _note_connection(data: dict) -> None:
    """A job that could not reach the engine (or was refused) updates the connection line too."""
    if data.get("code") in ("unreachable", "unauthorized", "version_mismatch", "timeout"):
        from . import prefs

        prefs.set_connection(None, "error", data.get("message", ""))


def load_strips(scene, take):
    """Insert the take's result (and conditioning videos, if fetched) as movie strips; returns the main strip."""
    target = sequencer.sequencer_scene(bpy.context) if bpy.context.scene == scene else scene
    for old in sequencer.strips_of_take(target, take.key):
        sequencer.remove_strip(target, old)
    num_frames = take.frame_end - take.frame_start + 1
    metadata = {"take": take.key, "job_id": take.job_id, "scene_id": take.scene_id, "engine_url": take.engine_url,
                "generator": take.generator, "seed": take.seed, "steps": take.steps, "prompt": take.prompt,
                "camera": take.camera, "preview": is_preview_generator(take.generator)}
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
    notify(level, text)


def _status_bar(text: str | None) -> None:
    workspace = getattr(bpy.context, "workspace", None)
    if workspace is None:
        windows = list(getattr(bpy.context.window_manager, "windows", None) or [])
        workspace = windows[0].workspace if windows else None
    if workspace is not None:
        try:
            workspace.status_text_set(text)
        except (RuntimeError, TypeError, ValueError):
            pass


#: Areas that show take or import progress (the EX-4D sidebars): the only ones redrawn while a job runs.
PROGRESS_AREAS = ("VIEW_3D", "SEQUENCE_EDITOR")


def _redraw_progress() -> None:
    """Redraw only the sidebars (UI region) of the areas with an EX-4D panel, not every area: a software-
    rendered viewport costs ~0.6-0.9 s per redraw, so tagging whole areas stalled the main loop."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", None) or []:
        for area in window.screen.areas:
            if area.type in PROGRESS_AREAS:
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()
        # The status bar holds the status text set above.
        for area in window.screen.areas:
            if area.type == "STATUSBAR":
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

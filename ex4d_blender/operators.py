"""EX4D_OT_* operators. Each ``execute`` is wrapped by :func:`reporting.reported`, the one place that
turns an outcome into a report: the body raises (a user error, or a bug reported as a bug) or returns
its success message.

Modules that need numpy (mesh_import, scene_camera, the vendored contract/interchange) are imported
inside the operators that use them, so the add-on enables on a Blender without numpy and each
feature names what it misses (``deps.require``).
"""

import importlib
import os
import uuid

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import coverage, deps, jobs, prefs, sequencer, takes, viewport
from ._engine.protocol import JobOptions, SceneOptions, StereoOptions
from .client import EngineClient, ServerError, is_loopback
from . import reporting
from .reporting import UserError, reported

TRAJECTORY_FORMATS = [("ex4d", "EX-4D trajectory (.json)", "ex4d.trajectory v1: exact K and w2c per frame"),
                      ("nerfstudio", "nerfstudio camera_path.json", "Vertical FOV per frame; centred principal point"),
                      ("colmap", "COLMAP text (folder)", "cameras.txt + images.txt (PINHOLE, w2c quaternions)")]
#: Health check before a job is sent: short, so a dead engine is reported at once, not as a failed take.
PREFLIGHT_TIMEOUT_S = 5.0


def feature(module: str, needs: str = "numpy", what: str = "This feature"):
    """Import ``.module`` for a feature, first checking that what it needs is installed."""
    deps.require(needs, what)
    return importlib.import_module(f"{__package__}.{module}")


def engine_client(context, timeout_s: float | None = None) -> EngineClient:
    """A client for the configured engine, refusing remote hosts while Blender's online access is off."""
    p = prefs.get_prefs(context)
    if not is_loopback(p.engine_url) and not bpy.app.online_access:
        raise ServerError(f"The engine at {p.engine_url} is not on this machine and Blender's online access is off "
                          "(Preferences > System > Network > Allow Online Access)", code="offline")
    return EngineClient(p.engine_url, prefs.resolve_token(p), timeout_s or p.timeout_s)


def checked_engine(context) -> EngineClient:
    """The engine client after a health + token + contract check (the connection line is updated either way)."""
    client = engine_client(context)
    probe = EngineClient(client.url, client.token, min(client.timeout_s, PREFLIGHT_TIMEOUT_S))
    try:
        short, full = probe.check_compatible()
    except ServerError as exc:
        prefs.set_connection(context, "error", exc.message)
        raise
    prefs.set_connection(context, "ok", full, short)
    return client


def active_ex4d_collection(context):
    collection = context.scene.ex4d.scene_collection
    if not takes.is_ex4d_collection(collection):
        raise UserError("No EX-4D scene in this file: use 'Import EX-4D scene' first "
                        "(or pick the imported collection in the EX-4D panel)", code="no_scene")
    return collection


def shot_frame_range(scene) -> tuple[int, int]:
    if scene.use_preview_range:
        return scene.frame_preview_start, scene.frame_preview_end
    return scene.frame_start, scene.frame_end


def selected_take(context):
    settings = context.scene.ex4d
    if not 0 <= settings.active_take < len(settings.takes):
        raise UserError("Select a take first", code="no_take")
    return settings.takes[settings.active_take]


class EX4D_OT_report_watch(bpy.types.Operator):
    """Report what background work says in the status bar and the Info log, while it runs"""

    bl_idname = "ex4d.report_watch"
    bl_label = "EX-4D reports"
    bl_options = {"INTERNAL"}

    _timer = None

    def invoke(self, context, event):
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        reporting.set_watching(True)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for level, text in reporting.take_pending():
            self.report({level}, text)  # a modal operator's reports reach the Info log and the status bar
        if not jobs.busy() and not reporting.pending():
            context.window_manager.event_timer_remove(self._timer)
            reporting.set_watching(False)
            return {"FINISHED"}
        return {"PASS_THROUGH"}

    def cancel(self, context):
        context.window_manager.event_timer_remove(self._timer)
        reporting.set_watching(False)


class EX4D_OT_show_text(bpy.types.Operator):
    """Show the full text (a message too long for the sidebar)"""

    bl_idname = "ex4d.show_text"
    bl_label = "Details"
    bl_options = {"INTERNAL"}

    text: bpy.props.StringProperty()
    title: bpy.props.StringProperty(default="EX-4D")

    @classmethod
    def description(cls, context, properties):
        return properties.text or "No details"

    def invoke(self, context, event):
        return context.window_manager.invoke_popup(self, width=480)

    def draw(self, context):
        self.layout.label(text=self.title)
        column = self.layout.column(align=True)
        for line in wrap(self.text, 78):
            column.label(text=line)

    def execute(self, context):
        return {"FINISHED"}


def wrap(text: str, width: int) -> list[str]:
    lines = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            if len(line) + len(word) + 1 > width and line:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
    return lines


class EX4D_OT_test_connection(bpy.types.Operator):
    """Check that the engine answers, accepts the token and speaks this add-on's contract version"""

    bl_idname = "ex4d.test_connection"
    bl_label = "Test connection"

    @reported("Test connection")
    def execute(self, context):
        checked_engine(context)
        return prefs.get_prefs(context).connection_verdict


class EX4D_OT_start_engine(bpy.types.Operator):
    """Start `ex4d serve` on this machine (log in the extension's user folder)"""

    bl_idname = "ex4d.start_engine"
    bl_label = "Start local engine"

    @reported("Start local engine")
    def execute(self, context):
        p = prefs.get_prefs(context)
        if not is_loopback(p.engine_url):
            raise UserError(f"A local engine needs a local URL (127.0.0.1), not {p.engine_url}", code="bad_url")
        log_path = os.path.join(prefs.user_dir("logs"), "engine.log")
        prefs.start_local_engine(p.engine_command, p.engine_url, log_path,
                                 bpy.path.abspath(p.engine_data_dir) if p.engine_data_dir else "")
        prefs.set_connection(context, "unknown", "Engine starting: use 'Test connection' in a few seconds")
        return f"Engine starting; log: {log_path}. Use 'Test connection' in a few seconds."


class EX4D_OT_stop_engine(bpy.types.Operator):
    """Stop the engine started from Blender"""

    bl_idname = "ex4d.stop_engine"
    bl_label = "Stop local engine"

    @reported("Stop local engine")
    def execute(self, context):
        prefs.stop_local_engine()
        prefs.set_connection(context, "unknown", "Local engine stopped")
        return "Local engine stopped"


class EX4D_OT_import_scene(bpy.types.Operator, ImportHelper):
    """Import an EX-4D scene package (.ex4dscene.zip): animated DW-mesh, source camera, shot camera"""

    bl_idname = "ex4d.import_scene"
    bl_label = "Import EX-4D scene"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".zip"
    filter_glob: bpy.props.StringProperty(default="*.zip", options={"HIDDEN"})
    scene_id: bpy.props.StringProperty(name="Engine scene id", default="",
                                       description="The engine's id of this scene, if it made the package")

    @reported("Import failed")
    def execute(self, context):
        mesh_import = feature("mesh_import", what="Importing an EX-4D scene")
        collection = mesh_import.import_package(context.scene, bpy.path.abspath(self.filepath),
                                                takes.output_dir(context.scene, "scenes"), scene_id=self.scene_id,
                                                engine_url=prefs.get_prefs(context).engine_url)
        feature("viewport", what="Framing the imported scene").setup_after_import(context.scene, collection)
        context.scene.ex4d.scene_collection = collection
        return (f"Imported '{collection.name}': {collection['ex4d_num_frames']} frames, "
                f"{collection['ex4d_width']}x{collection['ex4d_height']}")


def _start_scene_upload(context, video_path: str, options: dict, depth_path: str, name: str,
                        attach_to: str = "") -> str:
    """Start uploading a clip for reconstruction (background); ``attach_to``: a collection whose engine
    scene id is set when done, instead of importing the engine's package."""
    settings = context.scene.ex4d
    if settings.import_key and jobs.is_running(settings.import_key):
        raise UserError("An EX-4D upload is already running; cancel it first", code="busy")
    client = checked_engine(context)
    key = uuid.uuid4().hex[:12]
    package_path = os.path.join(takes.output_dir(context.scene, "packages"), f"{key}.ex4dscene.zip")
    jobs.start(key, context.scene.name, jobs.scene_upload_work(
        client.url, client.token, client.timeout_s, video_path, options, package_path, depth_path,
        name=name, attach_to=attach_to))
    settings.import_key, settings.import_status = key, "uploading"
    takes.ensure_timer()
    reporting.watch(context)
    return key


class EX4D_OT_import_video(bpy.types.Operator, ImportHelper):
    """Upload a video to the engine, let it reconstruct the scene, then import the package"""

    bl_idname = "ex4d.import_video"
    bl_label = "Reconstruct video with EX-4D"

    filter_glob: bpy.props.StringProperty(default="*.mp4;*.mov;*.mkv;*.avi;*.webm", options={"HIDDEN"})
    num_frames: bpy.props.IntProperty(name="Frames", default=49, min=1)
    fov_deg: bpy.props.FloatProperty(name="Horizontal FOV (0: engine default)", default=0.0, min=0.0, max=179.0)
    depth_path: bpy.props.StringProperty(
        name="Depth (optional)", subtype="FILE_PATH", default="",
        description="What `ex4d recon --depth` takes: .npy/.npz (T, H, W), or a folder of 16-bit PNG (millimetres) "
                    "or EXR depth frames. Empty: the engine estimates depth")

    @reported("From video")
    def execute(self, context):
        video = bpy.path.abspath(self.filepath)
        if not os.path.isfile(video):
            raise UserError(f"Video not found: {video}", code="not_found")
        depth = bpy.path.abspath(self.depth_path) if self.depth_path else ""
        if depth and os.path.isdir(depth):  # a PNG/EXR folder: the engine's upload takes .npy/.npz
            depth_files = feature("depth_files", what="A depth image folder")
            depth = depth_files.folder_to_npz(depth, os.path.join(takes.output_dir(context.scene, "packages"),
                                                                  f"depth-{uuid.uuid4().hex[:8]}.npz"))
        options = SceneOptions(num_frames=self.num_frames, fov_deg=self.fov_deg or None)
        name = os.path.splitext(os.path.basename(video))[0]
        _start_scene_upload(context, video, options, depth, name)
        return f"Uploading '{name}' to the EX-4D engine; the scene appears when reconstruction finishes"


class EX4D_OT_upload_scene(bpy.types.Operator):
    """Send this imported scene's source clip and depth to the engine so that shots can be generated from it"""

    bl_idname = "ex4d.upload_scene"
    bl_label = "Send scene to engine"

    @reported("Send scene to engine")
    def execute(self, context):
        collection = active_ex4d_collection(context)
        upload = feature("scene_upload", what="Sending a scene to the engine")
        video, depth, options = upload.source_of(collection, takes.output_dir(context.scene, "packages"))
        _start_scene_upload(context, video, options, depth, collection.name, attach_to=collection.name)
        return f"Sending '{collection.name}' to the engine; Generate is ready when it has the scene"


def _start_take(context, trajectory, collection, generator: str, seed: int, steps: int,
                prompt: str, profile: str, want_conditioning: bool, camera_name: str,
                frame_start: int, frame_end: int, speed: str = "", stereo: dict | None = None):
    """Check the engine, create a take, save its trajectory and start the job; returns the take.

    ``stereo``: the job's stereo options (``stereo.stereo_job_options``) for a stereo take, else None.
    """
    scene_id = str(collection.get("ex4d_scene_id", ""))
    if not scene_id:
        raise UserError(f"The engine does not know the scene '{collection.name}' (it was imported from a file): "
                        "press 'Send scene to engine' first", code="no_scene")
    client = checked_engine(context)  # before a take exists: a dead engine leaves no failed take behind
    key = uuid.uuid4().hex[:12]
    folder = takes.result_dir(context.scene, key)
    trajectory.meta["take"] = key
    trajectory_path = os.path.join(folder, "trajectory.json")
    trajectory.save(trajectory_path)
    take = takes.new_take(context.scene, key)
    take.name = f"{take.name} {takes.generator_label(generator)} s{seed}"
    take.status, take.scene_id, take.engine_url = takes.TakeState.new.value, scene_id, client.url
    take.generator, take.seed, take.steps, take.prompt = generator, seed, steps, prompt
    take.speed = speed if generator == "wan" else ""
    take.camera, take.frame_start, take.frame_end, take.fps = camera_name, frame_start, frame_end, trajectory.fps
    take.trajectory_path, take.want_conditioning = takes.stored_path(trajectory_path), want_conditioning
    options = JobOptions(generator=generator, seed=seed, steps=steps or None, prompt=prompt or None,
                         profile=profile or None, speed=(speed or None) if generator == "wan" else None,
                         stereo=StereoOptions(**stereo) if stereo else None)
    jobs.start(key, context.scene.name, jobs.generate_work(
        client.url, client.token, client.timeout_s, scene_id, trajectory.to_dict(), options,
        os.path.join(folder, "shot.mp4"), takes.conditioning_paths(folder, want_conditioning)))
    takes.ensure_timer()
    reporting.watch(context)
    return take


def _warn_if_newer_file(scene) -> str:
    """A .blend saved by a newer Blender may have lost animation on load here (e.g. 4.4 slotted actions in 4.2)."""
    saved, running = tuple(bpy.data.version), tuple(bpy.app.version)
    if bpy.data.filepath and saved[:2] > running[:2]:
        return (f"This file was saved by Blender {'.'.join(map(str, saved))}, newer than this "
                f"{bpy.app.version_string}: camera animation may not have loaded fully; check the path")
    return ""


class EX4D_OT_generate(bpy.types.Operator):
    """Send the shot camera's path (evaluated per frame) to the engine and get the shot back as a VSE strip"""

    bl_idname = "ex4d.generate"
    bl_label = "Generate shot"

    @reported("Generate")
    def execute(self, context):
        scene = context.scene
        settings = scene.ex4d
        scene_camera = feature("scene_camera", what="Generate")
        mesh_import = feature("mesh_import", what="Generate")
        camera = takes.shot_camera(scene)
        frame_start, frame_end = shot_frame_range(scene)
        collection = active_ex4d_collection(context)
        trajectory = scene_camera.trajectory_from_camera(scene, camera, frame_start, frame_end,
                                                         mesh_import.import_matrix(collection))
        stereo_options = None
        if settings.stereo:  # one rig for the shot, in engine units; the take records it in Blender units
            stereo = feature("stereo", what="A stereo take")
            problem = stereo.stereo_problem(scene, camera)
            if problem:
                raise UserError(problem, code="invalid_input")
            stereo_options = stereo.stereo_job_options(scene, camera, frame_start, frame_end,
                                                       mesh_import.import_matrix(collection), settings.stereo_layout)
        take = _start_take(context, trajectory, collection, settings.generator, settings.seed, settings.steps,
                           settings.prompt, settings.profile, settings.want_conditioning, camera.name,
                           frame_start, frame_end, settings.speed, stereo_options)
        if stereo_options:
            stereo.record_take_stereo(take, camera, settings.stereo_layout)
        warning = _warn_if_newer_file(scene)
        text = f"{take.name} sent: {len(trajectory)} frames from '{camera.name}'"
        return ("WARNING", f"{text}. {warning}") if warning else text


class EX4D_OT_regenerate(bpy.types.Operator):
    """Generate the selected take again: same camera path and settings, next seed"""

    bl_idname = "ex4d.regenerate"
    bl_label = "Re-generate"

    @reported("Re-generate")
    def execute(self, context):
        old = selected_take(context)
        if jobs.is_running(old.key) or old.status not in takes.TERMINAL:
            raise UserError(f"{old.name} is still {old.status}: wait for it or cancel it first", code="busy")
        collection = active_ex4d_collection(context)
        contract = feature("_engine.contract", what="Re-generate")
        trajectory = contract.Trajectory.load(bpy.path.abspath(old.trajectory_path))
        take = _start_take(context, trajectory, collection, old.generator, old.seed + 1, old.steps, old.prompt,
                           context.scene.ex4d.profile, old.want_conditioning, old.camera, old.frame_start,
                           old.frame_end, old.speed)
        return f"{take.name} sent (from {old.name})"


class EX4D_OT_cancel(bpy.types.Operator):
    """Cancel the selected take's job (or the running import) on the engine"""

    bl_idname = "ex4d.cancel"
    bl_label = "Cancel"

    @reported("Cancel")
    def execute(self, context):
        settings = context.scene.ex4d
        keys = [settings.import_key] if settings.import_key else []
        if 0 <= settings.active_take < len(settings.takes):
            keys.append(settings.takes[settings.active_take].key)
        if not [key for key in keys if jobs.cancel(key)]:
            raise UserError("Nothing is running", code="not_running", level="WARNING")
        return "Cancelling..."


class EX4D_OT_take_resume(bpy.types.Operator):
    """Follow the selected take's job again (after the file was reopened while it ran)"""

    bl_idname = "ex4d.take_resume"
    bl_label = "Resume take"

    @reported("Resume")
    def execute(self, context):
        take = selected_take(context)
        if not take.job_id or jobs.is_running(take.key) or take.status in takes.TERMINAL:
            raise UserError(f"{take.name} is {take.status}: nothing to resume", code="not_running")
        client = engine_client(context)
        folder = takes.result_dir(context.scene, take.key, take)
        jobs.start(take.key, context.scene.name, jobs.generate_work(
            client.url, client.token, client.timeout_s, take.scene_id, {}, JobOptions(), os.path.join(folder, "shot.mp4"),
            takes.conditioning_paths(folder, take.want_conditioning), job_id=take.job_id))
        takes.ensure_timer()
        reporting.watch(context)
        return f"Following {take.name} (job {take.job_id}) again"


class EX4D_OT_take_show(bpy.types.Operator):
    """Compare takes: unmute this take's strip and mute the other takes' strips over the same frames"""

    bl_idname = "ex4d.take_show"
    bl_label = "Show take"

    index: bpy.props.IntProperty(default=-1)

    @reported("Show take")
    def execute(self, context):
        settings = context.scene.ex4d
        index = self.index if self.index >= 0 else settings.active_take
        if not 0 <= index < len(settings.takes):
            raise UserError("No such take", code="no_take")
        take = settings.takes[index]
        target = sequencer.sequencer_scene(context)
        if not sequencer.strips_of_take(target, take.key):
            if take.status != "succeeded":
                raise UserError(f"{take.name} has no result yet ({take.status})", code="not_ready")
            takes.load_strips(context.scene, take)
        for strip in sequencer.all_strips(target):
            if strip.get("ex4d_take") and not strip.get("ex4d_conditioning"):
                strip.mute = strip.get("ex4d_take") != take.key
        settings.active_take = index
        return f"Showing {take.name}"


class EX4D_OT_take_remove(bpy.types.Operator):
    """Forget the selected take and delete its strips (files stay on disk)"""

    bl_idname = "ex4d.take_remove"
    bl_label = "Remove take"

    @reported("Remove take")
    def execute(self, context):
        settings = context.scene.ex4d
        take = selected_take(context)
        jobs.cancel(take.key)
        target = sequencer.sequencer_scene(context)
        for strip in sequencer.strips_of_take(target, take.key):
            sequencer.remove_strip(target, strip)
        name = take.name
        settings.takes.remove(settings.active_take)
        settings.active_take = min(settings.active_take, len(settings.takes) - 1)
        return f"Removed {name}"


class EX4D_OT_toggle_overlay(bpy.types.Operator):
    """Show or hide the faces the engine treats as hidden (occluded), in magenta"""

    bl_idname = "ex4d.toggle_overlay"
    bl_label = "Hidden-face overlay"

    @reported("Overlay")
    def execute(self, context):
        mesh_object = active_ex4d_collection(context).get("ex4d_mesh")
        if mesh_object is None:
            raise UserError("The EX-4D collection has lost its mesh; import the scene again", code="no_scene")
        feature("mesh_import", what="The overlay").set_overlay(mesh_object, not mesh_object.get("ex4d_overlay", False))
        return None


VIEWPORT_ACTIONS = [
    ("TOGGLE_SKIRT", "Skirt & back caps", "Show or hide the border skirt and back caps in the 3D views "
     "(renders and the shot view always keep them: the engine renders them)"),
    ("FRAME", "Frame scene", "Frame the scene's real surfaces (not the skirt) in this 3D view"),
    ("SHOT_VIEW", "Open shot view", "Split the 3D view: the new part looks through the shot camera, live, "
     "and shows exactly what the engine renders"),
    ("COVERAGE", "Check shot coverage", "Estimate per frame how much of the shot the engine can render; "
     "frames below the threshold get an 'EX4D n%' timeline marker"),
]


class EX4D_OT_viewport(bpy.types.Operator):
    """EX-4D scene in the 3D view: skirt toggle, framing, live shot view, shot coverage"""

    bl_idname = "ex4d.viewport"
    bl_label = "EX-4D view"

    action: bpy.props.EnumProperty(items=VIEWPORT_ACTIONS, default="FRAME")
    threshold_pct: bpy.props.FloatProperty(name="Flag below (%)", default=coverage.DEFAULT_THRESHOLD_PCT,
                                           min=0.0, max=100.0)
    samples: bpy.props.IntProperty(name="Rays per frame", default=coverage.DEFAULT_SAMPLES, min=16)
    frame_step: bpy.props.IntProperty(name="Frame step", default=1, min=1,
                                      description="Check every n-th frame (and the last): faster on long shots")

    @classmethod
    def description(cls, context, properties):
        return next(text for key, _name, text in VIEWPORT_ACTIONS if key == properties.action)

    @reported(lambda self: self.action.replace("_", " ").capitalize())
    def execute(self, context):
        scene = context.scene
        collection = active_ex4d_collection(context)
        camera = takes.shot_camera(scene)
        if self.action == "TOGGLE_SKIRT":
            visible = not viewport.skirt_visible(scene, collection)
            viewport.set_skirt_visible(scene, collection, visible)
            return f"Skirt and back caps {'shown' if visible else 'hidden'} in the 3D views"
        if self.action == "FRAME":
            feature("mesh_import", what="Frame scene")
            areas = [context.area] if context.area and context.area.type == "VIEW_3D" else viewport.view3d_areas()
            for area in areas:
                viewport.frame_view(area, collection)
            return None
        if self.action == "SHOT_VIEW":
            if camera is None:
                raise UserError("The scene has no camera to look through", code="no_camera")
            viewport.open_shot_view(context, camera)
            return None
        feature("mesh_import", what="Check coverage")
        frame_start, frame_end = shot_frame_range(scene)
        wm = context.window_manager
        frames = coverage.coverage_frames(frame_start, frame_end, self.frame_step)
        wm.progress_begin(0, len(frames))
        try:
            fractions = coverage.estimate_coverage(scene, collection, camera, frame_start, frame_end,
                                                   self.samples, lambda done, _total: wm.progress_update(done),
                                                   self.frame_step)
        finally:
            wm.progress_end()
        flagged = coverage.publish(scene, collection, camera.name, frames, fractions, self.threshold_pct)
        return ("WARNING" if flagged else "INFO"), f"Shot coverage: {coverage.summary(collection)}"


class EX4D_OT_export_trajectory(bpy.types.Operator, ExportHelper):
    """Write the shot camera's path (evaluated per frame) as ex4d.trajectory, nerfstudio or COLMAP"""

    bl_idname = "ex4d.export_trajectory"
    bl_label = "Export camera path"

    filename_ext = ".json"
    format: bpy.props.EnumProperty(name="Format", items=TRAJECTORY_FORMATS, default="ex4d")
    allow_lossy: bpy.props.BoolProperty(
        name="Allow lossy", default=False,
        description="nerfstudio cannot store fx != fy or lens shift: write it anyway (approximated)")

    @reported("Export failed")
    def execute(self, context):
        scene = context.scene
        camera = takes.shot_camera(scene)
        frame_start, frame_end = shot_frame_range(scene)
        path = bpy.path.abspath(self.filepath)
        if self.format == "colmap" and path.endswith(".json"):
            path = path[:-5]  # COLMAP text is a folder
        mesh_import = feature("mesh_import", what="Export camera path")
        scene_camera = feature("scene_camera", what="Export camera path")
        interchange = feature("_engine.interchange", what="Export camera path")
        collection = scene.ex4d.scene_collection
        matrix = (mesh_import.import_matrix(collection) if takes.is_ex4d_collection(collection)
                  else mesh_import.AXIS_MATRIX)
        trajectory = scene_camera.trajectory_from_camera(scene, camera, frame_start, frame_end, matrix)
        if self.format == "colmap":
            os.makedirs(path, exist_ok=True)
        interchange.save_trajectory(trajectory, path, self.format, allow_lossy=self.allow_lossy)
        warning = _warn_if_newer_file(scene)
        text = f"Wrote {len(trajectory)} cameras to {path}"
        return ("WARNING", f"{text}. {warning}") if warning else text


class EX4D_OT_import_trajectory(bpy.types.Operator, ImportHelper):
    """Create a camera keyed on every frame from an ex4d.trajectory, nerfstudio or COLMAP path"""

    bl_idname = "ex4d.import_trajectory"
    bl_label = "Import camera path"

    filter_glob: bpy.props.StringProperty(default="*.json;*.txt", options={"HIDDEN"})
    format: bpy.props.EnumProperty(name="Format", items=TRAJECTORY_FORMATS, default="ex4d")

    @reported("Import failed")
    def execute(self, context):
        scene = context.scene
        path = bpy.path.abspath(self.filepath)
        if self.format == "colmap" and os.path.isfile(path):
            path = os.path.dirname(path)  # the file browser picks a file inside the COLMAP folder
        mesh_import = feature("mesh_import", what="Import camera path")
        scene_camera = feature("scene_camera", what="Import camera path")
        interchange = feature("_engine.interchange", what="Import camera path")
        trajectory = interchange.load_trajectory(path, self.format)
        collection = scene.ex4d.scene_collection
        ex4d_scene = takes.is_ex4d_collection(collection)
        matrix = mesh_import.import_matrix(collection) if ex4d_scene else mesh_import.AXIS_MATRIX
        camera = scene_camera.keyed_camera_from_trajectory(
            scene, trajectory, os.path.basename(path.rstrip("/")) or "EX4D Path", scene.frame_start, matrix,
            collection if ex4d_scene else None)
        scene.frame_end = scene.frame_start + len(trajectory) - 1
        scene.camera = camera
        return f"Camera '{camera.name}' keyed on {len(trajectory)} frames"


classes = (
    EX4D_OT_report_watch,
    EX4D_OT_show_text,
    EX4D_OT_test_connection,
    EX4D_OT_start_engine,
    EX4D_OT_stop_engine,
    EX4D_OT_import_scene,
    EX4D_OT_import_video,
    EX4D_OT_upload_scene,
    EX4D_OT_generate,
    EX4D_OT_regenerate,
    EX4D_OT_cancel,
    EX4D_OT_take_resume,
    EX4D_OT_take_show,
    EX4D_OT_take_remove,
    EX4D_OT_toggle_overlay,
    EX4D_OT_viewport,
    EX4D_OT_export_trajectory,
    EX4D_OT_import_trajectory,
)

"""EX4D_OT_* operators: the only place that calls ``self.report``.

Errors raised deeper (ServerError, PackageError, CameraSettingsError, TrajectoryError) are caught
here once and shown to the artist; background work reports through ``ex4d.show_message``.
"""

import os
import uuid

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import jobs, mesh_import, prefs, scene_camera, sequencer, takes
from .camera_math import CameraSettingsError
from .client import EngineClient, ServerError, is_loopback
from .contract import Trajectory, TrajectoryError
from .interchange import load_trajectory, save_trajectory

USER_ERRORS = (ServerError, mesh_import.PackageError, CameraSettingsError, TrajectoryError, OSError, RuntimeError)
TRAJECTORY_FORMATS = [("ex4d", "EX-4D trajectory (.json)", "ex4d.trajectory v1: exact K and w2c per frame"),
                      ("nerfstudio", "nerfstudio camera_path.json", "Vertical FOV per frame; centred principal point"),
                      ("colmap", "COLMAP text (folder)", "cameras.txt + images.txt (PINHOLE, w2c quaternions)")]


def _error_text(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def engine_client(context) -> EngineClient:
    """A client for the configured engine, refusing remote hosts while Blender's online access is off."""
    p = prefs.get_prefs(context)
    if not is_loopback(p.engine_url) and not bpy.app.online_access:
        raise ServerError(f"The engine at {p.engine_url} is not on this machine and Blender's online access is off "
                          "(Preferences > System > Network > Allow Online Access)", code="offline")
    return EngineClient(p.engine_url, prefs.resolve_token(p), p.timeout_s)


def active_ex4d_collection(context):
    collection = context.scene.ex4d.scene_collection
    if not mesh_import.is_ex4d_collection(collection):
        raise mesh_import.PackageError("No EX-4D scene in this file: use 'Import EX-4D scene' first "
                                       "(or pick the imported collection in the EX-4D panel)")
    return collection


def shot_frame_range(scene) -> tuple[int, int]:
    if scene.use_preview_range:
        return scene.frame_preview_start, scene.frame_preview_end
    return scene.frame_start, scene.frame_end


class EX4D_OT_show_message(bpy.types.Operator):
    """Show a message from background work in the status bar and the Info log"""

    bl_idname = "ex4d.show_message"
    bl_label = "EX-4D Message"
    bl_options = {"INTERNAL"}

    level: bpy.props.EnumProperty(items=[(x, x, "") for x in ("INFO", "WARNING", "ERROR")], default="INFO")
    message: bpy.props.StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


class EX4D_OT_test_connection(bpy.types.Operator):
    """Check that the engine answers, accepts the token and speaks this add-on's contract version"""

    bl_idname = "ex4d.test_connection"
    bl_label = "Test connection"

    def execute(self, context):
        p = prefs.get_prefs(context)
        try:
            client = engine_client(context)
            client.timeout_s = min(client.timeout_s, 10.0)
            verdict = client.check_compatible()
        except USER_ERRORS as exc:
            p.connection_verdict = _error_text(exc)
            self.report({"ERROR"}, p.connection_verdict)
            return {"CANCELLED"}
        p.connection_verdict = verdict
        self.report({"INFO"}, verdict)
        return {"FINISHED"}


class EX4D_OT_start_engine(bpy.types.Operator):
    """Start `ex4d serve` on this machine (log in the extension's user folder)"""

    bl_idname = "ex4d.start_engine"
    bl_label = "Start local engine"

    def execute(self, context):
        p = prefs.get_prefs(context)
        if not is_loopback(p.engine_url):
            self.report({"ERROR"}, f"A local engine needs a local URL (127.0.0.1), not {p.engine_url}")
            return {"CANCELLED"}
        log_path = os.path.join(prefs.user_dir("logs"), "engine.log")
        try:
            prefs.start_local_engine(p.engine_command, p.engine_url, log_path,
                                     bpy.path.abspath(p.engine_data_dir) if p.engine_data_dir else "")
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Engine starting; log: {log_path}. Use 'Test connection' in a few seconds.")
        return {"FINISHED"}


class EX4D_OT_stop_engine(bpy.types.Operator):
    """Stop the engine started from Blender"""

    bl_idname = "ex4d.stop_engine"
    bl_label = "Stop local engine"

    def execute(self, context):
        prefs.stop_local_engine()
        return {"FINISHED"}


class EX4D_OT_import_scene(bpy.types.Operator, ImportHelper):
    """Import an EX-4D scene package (.ex4dscene.zip): animated DW-mesh, source camera, shot camera"""

    bl_idname = "ex4d.import_scene"
    bl_label = "Import EX-4D scene"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".zip"
    filter_glob: bpy.props.StringProperty(default="*.zip", options={"HIDDEN"})
    scene_id: bpy.props.StringProperty(name="Engine scene id", default="",
                                       description="The engine's id of this scene, if it made the package")

    def execute(self, context):
        try:
            collection = mesh_import.import_package(context.scene, self.filepath, prefs.data_dir(context),
                                                    scene_id=self.scene_id,
                                                    engine_url=prefs.get_prefs(context).engine_url)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Import failed: {_error_text(exc)}")
            return {"CANCELLED"}
        context.scene.ex4d.scene_collection = collection
        self.report({"INFO"}, f"Imported '{collection.name}': {collection['ex4d_num_frames']} frames, "
                              f"{collection['ex4d_width']}x{collection['ex4d_height']}")
        return {"FINISHED"}


class EX4D_OT_import_video(bpy.types.Operator, ImportHelper):
    """Upload a video to the engine, let it reconstruct the scene, then import the package"""

    bl_idname = "ex4d.import_video"
    bl_label = "Reconstruct video with EX-4D"

    filter_glob: bpy.props.StringProperty(default="*.mp4;*.mov;*.mkv;*.avi;*.webm", options={"HIDDEN"})
    num_frames: bpy.props.IntProperty(name="Frames", default=49, min=1)
    fov_deg: bpy.props.FloatProperty(name="Horizontal FOV (0: engine default)", default=0.0, min=0.0, max=179.0)
    depth_path: bpy.props.StringProperty(name="Depth file (optional)", subtype="FILE_PATH", default="",
                                         description="Depth as .npy/.npz (T, H, W); empty: the engine estimates it")

    def execute(self, context):
        settings = context.scene.ex4d
        if settings.import_key and jobs.is_running(settings.import_key):
            self.report({"ERROR"}, "An EX-4D import is already running; cancel it first")
            return {"CANCELLED"}
        try:
            client = engine_client(context)
            key = uuid.uuid4().hex[:12]
            package_path = os.path.join(prefs.data_dir(context), "packages", f"{key}.ex4dscene.zip")
            options = {"num_frames": self.num_frames, "fov_deg": self.fov_deg or None}
            jobs.start(key, context.scene.name, jobs.scene_upload_work(
                client.url, client.token, client.timeout_s, bpy.path.abspath(self.filepath), options, package_path,
                bpy.path.abspath(self.depth_path) if self.depth_path else ""))
        except USER_ERRORS as exc:
            self.report({"ERROR"}, _error_text(exc))
            return {"CANCELLED"}
        settings.import_key, settings.import_status = key, "uploading"
        takes.ensure_timer()
        self.report({"INFO"}, "Uploading to the EX-4D engine; the scene appears when reconstruction finishes")
        return {"FINISHED"}


def _start_take(context, trajectory: Trajectory, collection, generator: str, seed: int, steps: int,
                prompt: str, profile: str, want_conditioning: bool, camera_name: str,
                frame_start: int, frame_end: int, speed: str = ""):
    """Create a take, save its trajectory and start the job; returns the take."""
    scene_id = str(collection.get("ex4d_scene_id", ""))
    if not scene_id:
        raise ServerError(f"The engine does not know the scene '{collection.name}' (it was imported from a file). "
                          "Set its engine scene id in the EX-4D panel, or import it with "
                          "'Reconstruct video with EX-4D'", code="no_scene")
    client = engine_client(context)
    key = uuid.uuid4().hex[:12]
    folder = takes.result_dir(key)
    trajectory.meta["take"] = key
    trajectory_path = os.path.join(folder, "trajectory.json")
    trajectory.save(trajectory_path)
    take = takes.new_take(context.scene, key)
    take.name = f"{take.name} {generator} s{seed}"
    take.status, take.scene_id, take.engine_url = "submitting", scene_id, client.url
    take.generator, take.seed, take.steps, take.prompt = generator, seed, steps, prompt
    take.speed = speed if generator == "wan" else ""
    take.camera, take.frame_start, take.frame_end, take.fps = camera_name, frame_start, frame_end, trajectory.fps
    take.trajectory_path, take.want_conditioning = trajectory_path, want_conditioning
    result_path = os.path.join(folder, "shot.mp4")
    conditioning = ({"colour": os.path.join(folder, "conditioning_colour.mp4"),
                     "mask": os.path.join(folder, "conditioning_mask.mp4")} if want_conditioning else {})
    options = {"generator": generator, "seed": seed, "steps": steps or None, "prompt": prompt or None,
               "profile": profile or None}
    if generator == "wan" and speed:
        options["speed"] = speed
    jobs.start(key, context.scene.name, jobs.generate_work(client.url, client.token, client.timeout_s, scene_id,
                                                           trajectory.to_dict(), options, result_path, conditioning))
    takes.ensure_timer()
    return take


class EX4D_OT_generate(bpy.types.Operator):
    """Send the shot camera's path (evaluated per frame) to the engine and get the shot back as a VSE strip"""

    bl_idname = "ex4d.generate"
    bl_label = "Generate shot"

    def execute(self, context):
        scene = context.scene
        settings = scene.ex4d
        camera = settings.shot_camera or scene.camera
        frame_start, frame_end = shot_frame_range(scene)
        try:
            collection = active_ex4d_collection(context)
            trajectory = scene_camera.trajectory_from_camera(scene, camera, frame_start, frame_end,
                                                             mesh_import.import_matrix(collection))
            take = _start_take(context, trajectory, collection, settings.generator, settings.seed, settings.steps,
                               settings.prompt, settings.profile, settings.want_conditioning, camera.name,
                               frame_start, frame_end, settings.speed)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Generate: {_error_text(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{take.name} sent: {len(trajectory)} frames from '{camera.name}'")
        return {"FINISHED"}


class EX4D_OT_regenerate(bpy.types.Operator):
    """Generate the selected take again: same camera path and settings, next seed"""

    bl_idname = "ex4d.regenerate"
    bl_label = "Re-generate take"

    def execute(self, context):
        settings = context.scene.ex4d
        if not 0 <= settings.active_take < len(settings.takes):
            self.report({"ERROR"}, "Select a take first")
            return {"CANCELLED"}
        old = settings.takes[settings.active_take]
        try:
            collection = active_ex4d_collection(context)
            trajectory = Trajectory.load(bpy.path.abspath(old.trajectory_path))
            take = _start_take(context, trajectory, collection, old.generator, old.seed + 1, old.steps, old.prompt,
                               settings.profile, old.want_conditioning, old.camera, old.frame_start, old.frame_end,
                               old.speed)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Re-generate: {_error_text(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{take.name} sent (from {old.name})")
        return {"FINISHED"}


class EX4D_OT_cancel(bpy.types.Operator):
    """Cancel the selected take's job (or the running import) on the engine"""

    bl_idname = "ex4d.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        settings = context.scene.ex4d
        keys = [settings.import_key] if settings.import_key else []
        if 0 <= settings.active_take < len(settings.takes):
            keys.append(settings.takes[settings.active_take].key)
        cancelled = [key for key in keys if jobs.cancel(key)]
        if not cancelled:
            self.report({"WARNING"}, "Nothing is running")
            return {"CANCELLED"}
        self.report({"INFO"}, "Cancelling...")
        return {"FINISHED"}


class EX4D_OT_take_resume(bpy.types.Operator):
    """Follow the selected take's job again (after the file was reopened while it ran)"""

    bl_idname = "ex4d.take_resume"
    bl_label = "Resume take"

    def execute(self, context):
        settings = context.scene.ex4d
        if not 0 <= settings.active_take < len(settings.takes):
            self.report({"ERROR"}, "Select a take first")
            return {"CANCELLED"}
        take = settings.takes[settings.active_take]
        if not take.job_id or jobs.is_running(take.key) or take.status in takes.TERMINAL:
            self.report({"ERROR"}, f"{take.name} is {take.status}: nothing to resume")
            return {"CANCELLED"}
        try:
            client = engine_client(context)
            folder = takes.result_dir(take.key)
            conditioning = ({"colour": os.path.join(folder, "conditioning_colour.mp4"),
                             "mask": os.path.join(folder, "conditioning_mask.mp4")} if take.want_conditioning else {})
            jobs.start(take.key, context.scene.name, jobs.generate_work(
                client.url, client.token, client.timeout_s, take.scene_id, {}, {}, os.path.join(folder, "shot.mp4"),
                conditioning, job_id=take.job_id))
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Resume: {_error_text(exc)}")
            return {"CANCELLED"}
        takes.ensure_timer()
        self.report({"INFO"}, f"Following {take.name} (job {take.job_id}) again")
        return {"FINISHED"}


class EX4D_OT_take_show(bpy.types.Operator):
    """Compare takes: unmute this take's strip and mute the other takes' strips over the same frames"""

    bl_idname = "ex4d.take_show"
    bl_label = "Show take"

    index: bpy.props.IntProperty(default=-1)

    def execute(self, context):
        settings = context.scene.ex4d
        index = self.index if self.index >= 0 else settings.active_take
        if not 0 <= index < len(settings.takes):
            self.report({"ERROR"}, "No such take")
            return {"CANCELLED"}
        take = settings.takes[index]
        target = sequencer.sequencer_scene(context)
        mine = sequencer.strips_of_take(target, take.key)
        if not mine:
            if take.status != "succeeded":
                self.report({"ERROR"}, f"{take.name} has no result yet ({take.status})")
                return {"CANCELLED"}
            try:
                mine = [takes.load_strips(context.scene, take)]
            except USER_ERRORS as exc:
                self.report({"ERROR"}, f"Could not load {take.name}: {_error_text(exc)}")
                return {"CANCELLED"}
        for strip in sequencer.all_strips(target):
            if strip.get("ex4d_take") and not strip.get("ex4d_conditioning"):
                strip.mute = strip.get("ex4d_take") != take.key
        settings.active_take = index
        self.report({"INFO"}, f"Showing {take.name}")
        return {"FINISHED"}


class EX4D_OT_take_remove(bpy.types.Operator):
    """Forget the selected take and delete its strips (files stay on disk)"""

    bl_idname = "ex4d.take_remove"
    bl_label = "Remove take"

    def execute(self, context):
        settings = context.scene.ex4d
        if not 0 <= settings.active_take < len(settings.takes):
            return {"CANCELLED"}
        take = settings.takes[settings.active_take]
        jobs.cancel(take.key)
        target = sequencer.sequencer_scene(context)
        for strip in sequencer.strips_of_take(target, take.key):
            sequencer.remove_strip(target, strip)
        settings.takes.remove(settings.active_take)
        settings.active_take = min(settings.active_take, len(settings.takes) - 1)
        return {"FINISHED"}


class EX4D_OT_toggle_overlay(bpy.types.Operator):
    """Show or hide the faces the engine treats as hidden (occluded), in magenta"""

    bl_idname = "ex4d.toggle_overlay"
    bl_label = "Hidden-face overlay"

    def execute(self, context):
        try:
            mesh_object = active_ex4d_collection(context)["ex4d_mesh"]
        except (mesh_import.PackageError, KeyError) as exc:
            self.report({"ERROR"}, _error_text(exc))
            return {"CANCELLED"}
        mesh_import.set_overlay(mesh_object, not mesh_object.get("ex4d_overlay", False))
        return {"FINISHED"}


class EX4D_OT_export_trajectory(bpy.types.Operator, ExportHelper):
    """Write the shot camera's path (evaluated per frame) as ex4d.trajectory, nerfstudio or COLMAP"""

    bl_idname = "ex4d.export_trajectory"
    bl_label = "Export camera path"

    filename_ext = ".json"
    format: bpy.props.EnumProperty(name="Format", items=TRAJECTORY_FORMATS, default="ex4d")
    allow_lossy: bpy.props.BoolProperty(
        name="Allow lossy", default=False,
        description="nerfstudio cannot store fx != fy or lens shift: write it anyway (approximated)")

    def execute(self, context):
        scene = context.scene
        camera = scene.ex4d.shot_camera or scene.camera
        frame_start, frame_end = shot_frame_range(scene)
        path = bpy.path.abspath(self.filepath)
        if self.format == "colmap" and path.endswith(".json"):
            path = path[:-5]  # COLMAP text is a folder
        try:
            collection = scene.ex4d.scene_collection
            matrix = (mesh_import.import_matrix(collection) if mesh_import.is_ex4d_collection(collection)
                      else mesh_import.AXIS_MATRIX)
            trajectory = scene_camera.trajectory_from_camera(scene, camera, frame_start, frame_end, matrix)
            if self.format == "colmap":
                os.makedirs(path, exist_ok=True)
            save_trajectory(trajectory, path, self.format, allow_lossy=self.allow_lossy)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Export failed: {_error_text(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(trajectory)} cameras to {path}")
        return {"FINISHED"}


class EX4D_OT_import_trajectory(bpy.types.Operator, ImportHelper):
    """Create a camera keyed on every frame from an ex4d.trajectory, nerfstudio or COLMAP path"""

    bl_idname = "ex4d.import_trajectory"
    bl_label = "Import camera path"

    filter_glob: bpy.props.StringProperty(default="*.json;*.txt", options={"HIDDEN"})
    format: bpy.props.EnumProperty(name="Format", items=TRAJECTORY_FORMATS, default="ex4d")

    def execute(self, context):
        scene = context.scene
        path = bpy.path.abspath(self.filepath)
        if self.format == "colmap" and os.path.isfile(path):
            path = os.path.dirname(path)  # the file browser picks a file inside the COLMAP folder
        try:
            trajectory = load_trajectory(path, self.format)
            collection = scene.ex4d.scene_collection
            ex4d_scene = mesh_import.is_ex4d_collection(collection)
            matrix = mesh_import.import_matrix(collection) if ex4d_scene else mesh_import.AXIS_MATRIX
            camera = scene_camera.keyed_camera_from_trajectory(
                scene, trajectory, os.path.basename(path.rstrip("/")) or "EX4D Path", scene.frame_start, matrix,
                collection if ex4d_scene else None)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, f"Import failed: {_error_text(exc)}")
            return {"CANCELLED"}
        scene.frame_end = scene.frame_start + len(trajectory) - 1
        scene.camera = camera
        self.report({"INFO"}, f"Camera '{camera.name}' keyed on {len(trajectory)} frames")
        return {"FINISHED"}


classes = (
    EX4D_OT_show_message,
    EX4D_OT_test_connection,
    EX4D_OT_start_engine,
    EX4D_OT_stop_engine,
    EX4D_OT_import_scene,
    EX4D_OT_import_video,
    EX4D_OT_generate,
    EX4D_OT_regenerate,
    EX4D_OT_cancel,
    EX4D_OT_take_resume,
    EX4D_OT_take_show,
    EX4D_OT_take_remove,
    EX4D_OT_toggle_overlay,
    EX4D_OT_export_trajectory,
    EX4D_OT_import_trajectory,
)

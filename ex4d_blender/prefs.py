"""Add-on preferences: where the engine is, the token, and an optional local engine process.

Every lookup goes through ``__package__`` (an extension is imported as ``bl_ext.<repo>.ex4d``).
"""

import os
import shlex
import subprocess

import time

import bpy

from .client import DEFAULT_URL
from .reporting import UserError

ADDON_PACKAGE = __package__
_local_engine: subprocess.Popen | None = None
_connection_checked_at = 0.0  # time.monotonic() of the latest verdict; 0: not checked in this session


def get_prefs(context=None):
    context = context or bpy.context
    return context.preferences.addons[ADDON_PACKAGE].preferences


def user_dir(*parts: str) -> str:
    """Writable per-user folder of the extension (the add-on's own folder may be read-only)."""
    path = bpy.utils.extension_path_user(ADDON_PACKAGE, path=os.path.join(*parts) if parts else "", create=True)
    return path


def data_dir(context=None) -> str:
    """Where imported scenes and generated shots are written."""
    prefs = get_prefs(context)
    if prefs.data_dir:
        path = bpy.path.abspath(prefs.data_dir)
        os.makedirs(path, exist_ok=True)
        return path
    return user_dir("data")


def engine_data_dir(prefs) -> str:
    """The local engine's data dir, as ``ex4d serve`` resolves it (docs/api.md)."""
    if prefs.engine_data_dir:
        return bpy.path.abspath(prefs.engine_data_dir)
    if os.environ.get("EX4D_DATA_DIR"):
        return os.environ["EX4D_DATA_DIR"]
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "ex4d")


def resolve_token(prefs) -> str:
    """The token from the preferences; else, for an engine on this machine, $EX4D_TOKEN or its token file."""
    from .client import is_loopback

    if prefs.token.strip():
        return prefs.token.strip()
    if not is_loopback(prefs.engine_url):
        return ""
    if os.environ.get("EX4D_TOKEN"):
        return os.environ["EX4D_TOKEN"].strip()
    try:
        with open(os.path.join(engine_data_dir(prefs), "token"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def start_local_engine(command: str, url: str, log_path: str, data_dir: str = "") -> subprocess.Popen:
    """Launch ``<command> serve`` on the URL's loopback port, logging to ``log_path``."""
    from urllib.parse import urlparse

    global _local_engine
    if _local_engine is not None and _local_engine.poll() is None:
        return _local_engine
    parsed = urlparse(url)
    args = [*shlex.split(command), "serve", "--host", parsed.hostname or "127.0.0.1", "--port", str(parsed.port or 8420)]
    if data_dir:
        args += ["--data-dir", data_dir]
    log = open(log_path, "ab")
    try:
        _local_engine = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise UserError(f"Could not start '{args[0]}': {exc}. Set the engine command in the preferences "
                        "(e.g. the full path to ex4d in the engine's virtual environment).",
                        code="not_found") from None
    finally:
        log.close()
    return _local_engine


def stop_local_engine() -> None:
    global _local_engine
    if _local_engine is not None and _local_engine.poll() is None:
        _local_engine.terminate()
        try:
            _local_engine.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _local_engine.kill()
    _local_engine = None


def set_connection(context, state: str, full: str, short: str = "") -> None:
    """Record the latest verdict about the engine (``ok``, ``error`` or ``unknown``) and when it was made."""
    p = get_prefs(context)
    p.connection_state = state
    p.connection_verdict = full
    p.connection_short = short or {"ok": "Engine ready", "error": "Engine problem"}.get(state, "Not checked")
    global _connection_checked_at
    _connection_checked_at = time.monotonic()


def connection_line(p) -> str:
    """The panel's connection line: the short verdict and its age (a verdict is never shown as current forever)."""
    if _connection_checked_at <= 0:
        return "Engine: not checked"
    age = max(0.0, time.monotonic() - _connection_checked_at)
    when = "just now" if age < 60 else (f"{age / 60:.0f} min ago" if age < 3600 else f"{age / 3600:.0f} h ago")
    return f"{p.connection_short} ({when})"


def local_engine_running() -> bool:
    return _local_engine is not None and _local_engine.poll() is None


class EX4D_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    engine_url: bpy.props.StringProperty(
        name="Engine URL", default=DEFAULT_URL,
        description="Address of `ex4d serve`. Hosts other than this machine need Blender's online access")
    token: bpy.props.StringProperty(
        name="Token", subtype="PASSWORD", default="",
        description="Bearer token (empty: for an engine on this machine, $EX4D_TOKEN or <engine data dir>/token)")
    engine_data_dir: bpy.props.StringProperty(
        name="Engine data folder", subtype="DIR_PATH", default="",
        description="Data dir of the local engine (empty: $EX4D_DATA_DIR or ~/.local/share/ex4d); "
                    "its token file is read when Token is empty")
    timeout_s: bpy.props.FloatProperty(name="Timeout (s)", default=30.0, min=1.0, max=3600.0,
                                       description="Per-request timeout; jobs themselves may run much longer")
    data_dir: bpy.props.StringProperty(
        name="Data folder", subtype="DIR_PATH", default="",
        description="Where takes and scenes of a not yet saved .blend go (empty: the extension's user folder); "
                    "a saved .blend uses the EX-4D panel's Output folder (default //ex4d/)")
    engine_command: bpy.props.StringProperty(
        name="Engine command", default="ex4d",
        description="Command that runs the engine CLI, used by 'Start local engine' (`<command> serve`)")
    connection_verdict: bpy.props.StringProperty(name="Connection", default="not tested")
    connection_short: bpy.props.StringProperty(default="Not checked")
    connection_state: bpy.props.StringProperty(default="unknown")  # ok, error, unknown

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_url")
        layout.prop(self, "token")
        layout.use_property_split = True
        layout.prop(self, "timeout_s")
        layout.prop(self, "data_dir")
        row = layout.row()
        row.operator("ex4d.test_connection", icon="LINKED")
        row.label(text=connection_line(self), icon="CHECKMARK" if self.connection_state == "ok" else "INFO")
        if self.connection_verdict:
            layout.label(text=self.connection_verdict)
        box = layout.box()
        box.label(text="Local engine")
        box.prop(self, "engine_command")
        box.prop(self, "engine_data_dir")
        row = box.row()
        if local_engine_running():
            row.operator("ex4d.stop_engine", icon="CANCEL")
            row.label(text="running")
            box.label(text="Log: " + os.path.join(user_dir("logs"), "engine.log"))
        else:
            row.operator("ex4d.start_engine", icon="PLAY")

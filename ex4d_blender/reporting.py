"""The one place that turns outcomes into reports for the artist (status bar + Info log).

* :class:`UserError`: something the artist can fix; its message is shown as is.
* Engine errors (the vendored ``_engine.errors`` tree and the contract's ``TrajectoryError``) are user
  errors too.
* Anything else is a bug in the add-on: the traceback goes to the console and the report says so,
  instead of passing a ``RuntimeError``/``OSError`` off as the artist's mistake.

Operators wrap ``execute`` with :func:`reported`; background work (``jobs``/``takes``) calls
:func:`notify` on the main thread. No bpy at import: worker threads use :func:`describe`.
"""

from __future__ import annotations

import functools
import sys
import traceback

ADDON_PACKAGE = __package__
LEVELS = ("INFO", "WARNING", "ERROR")


class UserError(Exception):
    """An error the artist can fix. ``code``: a short machine name; ``level``: how it is reported."""

    def __init__(self, message: str, code: str = "invalid_input", level: str = "ERROR"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.level = level


def _engine_error_classes() -> tuple[type, ...]:
    """The vendored engine's user-error classes that are loaded (an unloaded class cannot have been raised)."""
    found = []
    for module_name, class_name in (("errors", "Ex4dError"), ("contract", "TrajectoryError")):
        module = sys.modules.get(f"{ADDON_PACKAGE}._engine.{module_name}")
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def is_user_error(exc: BaseException) -> bool:
    """The artist can fix it: the add-on's own errors and the engine's, unless the error table calls it a bug."""
    if isinstance(exc, _engine_error_classes()):
        return not getattr(exc, "is_bug", False)
    return isinstance(exc, UserError) or getattr(exc, "user_error", False) is True


def describe(exc: BaseException, what: str = "") -> tuple[str, str, bool]:
    """(level, text, is_bug) for ``exc``; a bug's traceback is printed to the console here."""
    prefix = f"{what}: " if what else ""
    if is_user_error(exc):
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if what and text.startswith(what):  # "Generate needs numpy", not "Generate: Generate needs numpy"
            prefix = ""
        kind = getattr(exc, "kind", None)  # an engine error: its row of the error table says how loud
        level = getattr(exc, "level", None) or getattr(kind, "blender_level", "ERROR")
        return (level if level in LEVELS else "ERROR"), prefix + text, False
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    return "ERROR", (f"{prefix}internal error in the EX-4D add-on ({type(exc).__name__}: {exc}). This is a bug, "
                     "not something you did: the traceback is in the system console; please report it"), True


def reported(what):
    """Decorate ``Operator.execute``: the body raises on failure and returns a success message (or None).

    ``what`` names the action in error reports: a string, or a function of the operator.

    A returned string is reported as INFO; a ``(level, text)`` pair with that level; errors as
    :func:`describe` says. Returns ``{'FINISHED'}`` or ``{'CANCELLED'}``.
    """

    def wrap(execute):
        @functools.wraps(execute)
        def run(self, context):
            try:
                outcome = execute(self, context)
            except Exception as exc:  # noqa: BLE001 - every failure must reach the artist
                level, text, _bug = describe(exc, what if isinstance(what, str) else what(self))
                self.report({level}, text)
                return {"CANCELLED"}
            if isinstance(outcome, tuple):
                self.report({outcome[0]}, outcome[1])
            elif outcome:
                self.report({"INFO"}, outcome)
            return {"FINISHED"}

        return run

    return wrap


#: Reports from background work waiting for the report watcher (main thread only).
_pending: list[tuple[str, str]] = []


def notify(level: str, text: str) -> None:
    """Main thread, outside an operator (timers): queue a report for the status bar and the Info log.

    Blender keeps the reports of operators called from Python (``bpy.ops`` in a timer) to the console;
    only an operator run by the window manager reaches the Info log and the status bar. So the modal
    ``ex4d.report_watch`` (started by the operators that start background work, see :func:`watch`)
    reports what is queued here. The text is printed to the console too.
    """
    import bpy

    print(f"EX-4D {level}: {text}")
    if getattr(bpy.context.window_manager, "windows", None):  # background mode: the console is all there is
        _pending.append((level if level in LEVELS else "INFO", text))


def pending() -> bool:
    return bool(_pending)


def take_pending() -> list[tuple[str, str]]:
    items = list(_pending)
    _pending.clear()
    return items


def watch(context) -> None:
    """Start the report watcher in this window (no-op without a window: background mode, tests)."""
    import bpy

    if getattr(context, "window", None) is None or is_watching():
        return
    bpy.ops.ex4d.report_watch("INVOKE_DEFAULT")


_watching = [False]


def is_watching() -> bool:
    return _watching[0]


def set_watching(value: bool) -> None:
    _watching[0] = value

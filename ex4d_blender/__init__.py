"""EX-4D Camera Re-shoot: Blender extension (manifest: blender_manifest.toml at the repository root).

Imports an EX-4D scene as animated geometry, sends keyframed cameras to the local engine
(``ex4d serve``) and brings the shots back as VSE strips. Pure Python: only what Blender ships.
"""

import bpy

from . import operators, prefs, takes, ui

classes = (
    prefs.EX4D_AddonPreferences,
    takes.EX4D_Take,
    takes.EX4D_SceneSettings,
    *operators.classes,
    *ui.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ex4d = bpy.props.PointerProperty(type=takes.EX4D_SceneSettings)


def unregister():
    takes.stop_timer()
    prefs.stop_local_engine()
    del bpy.types.Scene.ex4d
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)

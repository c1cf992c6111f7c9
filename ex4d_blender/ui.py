"""Panels: 3D View sidebar > EX-4D (scene, shot, takes) and the Sequencer sidebar (takes)."""

import bpy

from . import jobs, mesh_import, prefs, takes


class EX4D_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        icons = {"succeeded": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}
        row = layout.row(align=True)
        row.label(text=item.name, icon=icons.get(item.status, "TIME"))
        if item.status in ("queued", "running", "submitting"):
            row.prop(item, "progress", text="", slider=True)
        else:
            row.label(text=item.status)
        if item.status == "succeeded":
            row.operator("ex4d.take_show", text="", icon="HIDE_OFF").index = index


def _draw_takes(layout, context):
    settings = context.scene.ex4d
    layout.template_list("EX4D_UL_takes", "", settings, "takes", settings, "active_take", rows=3)
    if 0 <= settings.active_take < len(settings.takes):
        take = settings.takes[settings.active_take]
        box = layout.box()
        box.label(text=takes.describe(take))
        if take.message and take.status in ("failed", "cancelled", "succeeded"):
            for line in _wrap(take.message, 60):
                box.label(text=line, icon="ERROR" if take.status == "failed" else "INFO")
        box.label(text=f"job {take.job_id or '-'} | frames {take.frame_start}-{take.frame_end} | {take.camera}")
        row = box.row(align=True)
        row.operator("ex4d.take_show", text="Show / compare", icon="SEQUENCE").index = settings.active_take
        row.operator("ex4d.regenerate", icon="FILE_REFRESH")
        row.operator("ex4d.take_remove", text="", icon="X")
        if jobs.is_running(take.key):
            box.operator("ex4d.cancel", icon="CANCEL")
        elif take.status not in takes.TERMINAL and take.job_id:
            box.operator("ex4d.take_resume", icon="PLAY")  # saved while running, file reopened


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


class EX4D_PT_main(bpy.types.Panel):
    bl_label = "EX-4D"
    bl_idname = "EX4D_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "EX-4D"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        settings = scene.ex4d
        p = prefs.get_prefs(context)
        row = layout.row(align=True)
        row.label(text=p.connection_verdict, icon="LINKED")
        row.operator("ex4d.test_connection", text="", icon="FILE_REFRESH")

        box = layout.box()
        box.label(text="Scene", icon="SCENE_DATA")
        row = box.row(align=True)
        row.operator("ex4d.import_scene", icon="IMPORT")
        row.operator("ex4d.import_video", text="From video", icon="FILE_MOVIE")
        if settings.import_key:
            box.label(text=f"Import: {settings.import_status}")
            box.operator("ex4d.cancel", icon="CANCEL")
        box.prop(settings, "scene_collection")
        collection = settings.scene_collection
        if mesh_import.is_ex4d_collection(collection):
            box.prop(collection, '["ex4d_scene_id"]', text="Engine scene id")
            box.label(text=f"{collection['ex4d_width']}x{collection['ex4d_height']}, "
                           f"{collection['ex4d_num_frames']} frames @ {collection['ex4d_fps']:g} fps")
            mesh_object = collection.get("ex4d_mesh")
            overlay_on = bool(mesh_object and mesh_object.get("ex4d_overlay"))
            box.operator("ex4d.toggle_overlay", depress=overlay_on, icon="OVERLAY")

        box = layout.box()
        box.label(text="Shot", icon="CAMERA_DATA")
        box.prop(settings, "shot_camera")
        box.prop(settings, "generator")
        if settings.generator == "wan":
            box.prop(settings, "speed")
        row = box.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "steps")
        box.prop(settings, "prompt")
        box.prop(settings, "want_conditioning")
        row = box.row(align=True)
        row.scale_y = 1.4
        row.operator("ex4d.generate", icon="RENDER_ANIMATION")
        row = box.row(align=True)
        row.operator("ex4d.export_trajectory", icon="EXPORT")
        row.operator("ex4d.import_trajectory", icon="IMPORT")

        layout.label(text="Takes", icon="SEQUENCE")
        _draw_takes(layout, context)


class EX4D_PT_sequencer(bpy.types.Panel):
    bl_label = "EX-4D Takes"
    bl_idname = "EX4D_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "EX-4D"

    def draw(self, context):
        _draw_takes(self.layout, context)


classes = (EX4D_UL_takes, EX4D_PT_main, EX4D_PT_sequencer)

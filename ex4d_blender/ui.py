"""Panels: 3D View sidebar > EX-4D (engine, scene, shot, takes) and the Sequencer sidebar (takes).

Laid out to read at Blender's default sidebar width: property split, short labels, one fact per line;
anything longer (an error, the engine's full verdict) sits behind an (i) button whose tooltip and popup
show the whole text. Nothing here imports numpy.
"""

import bpy

from . import coverage, deps, jobs, prefs, takes, viewport

#: Characters that fit a label at the default sidebar width (measured on the GUI test's screenshots).
SHORT = 34


def short(text: str, width: int = SHORT) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def details(layout, text: str, title: str = "EX-4D", icon: str = "INFO") -> None:
    """An (i) button: tooltip and popup with the full ``text``."""
    props = layout.operator("ex4d.show_text", text="", icon=icon, emboss=False)
    props.text, props.title = text, title


def message_line(layout, text: str, icon: str = "INFO", alert: bool = False) -> None:
    """One line of ``text``, cut to the sidebar, with the full text behind (i) when cut."""
    row = layout.row(align=True)
    row.alert = alert
    row.label(text=short(text), icon=icon)
    if len(text) > SHORT:
        details(row, text)


class EX4D_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        icons = {"succeeded": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}
        row = layout.row(align=True)
        row.label(text=item.name, icon=icons.get(item.status, "TIME"))
        if item.status in takes.RUNNING:
            row.label(text=f"{takes.take_progress(item)[1]:.0f}%")
        elif item.status == "succeeded":
            row.operator("ex4d.take_show", text="", icon="HIDE_OFF", emboss=False).index = index
        else:
            row.label(text=item.status)


def draw_takes(layout, context):
    settings = context.scene.ex4d
    if not len(settings.takes):
        layout.label(text="No takes yet: press Generate")
        return
    layout.template_list("EX4D_UL_takes", "", settings, "takes", settings, "active_take", rows=3)
    if not 0 <= settings.active_take < len(settings.takes):
        return
    take = settings.takes[settings.active_take]
    box = layout.box()
    running = jobs.is_running(take.key)
    if running or take.status in takes.RUNNING:
        # Progress and Cancel first: they stay in view however many takes there are.
        stage, percent, eta_s = takes.take_progress(take)
        row = box.row(align=True)
        row.label(text=f"{stage or take.status}: {percent:.0f}%", icon="TIME")
        if running:
            row.operator("ex4d.cancel", text="", icon="CANCEL")
        else:  # saved while running, file reopened
            row.operator("ex4d.take_resume", text="", icon="PLAY")
        if eta_s >= 0:
            box.label(text=f"About {eta_s:.0f} s left")
    else:
        icon = {"succeeded": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}.get(take.status, "INFO")
        message_line(box, f"{take.status.capitalize()}: {take.message}" if take.message else take.status.capitalize(),
                     icon=icon, alert=take.status == "failed")
    row = box.row(align=True)
    row.label(text=f"Frames {take.frame_start}-{take.frame_end}, {take.camera}")
    details(row, f"{take.name}\njob {take.job_id or '-'} on {take.engine_url}\nscene {take.scene_id}\n"
                 f"generator {takes.generator_label(take.generator)}, seed {take.seed}, "
                 f"steps {take.steps or 'default'}\n"
                 f"prompt: {take.prompt or '-'}\nresult: {take.result_path or '-'}\n{take.message}", title=take.name)
    if take.status in takes.TERMINAL and not running:
        row = box.row(align=True)
        row.operator("ex4d.take_show", text="Show", icon="SEQUENCE").index = settings.active_take
        row.operator("ex4d.regenerate", text="Again", icon="FILE_REFRESH")
        row.operator("ex4d.take_remove", text="", icon="X")


class SidebarPanel:
    """3D View sidebar > EX-4D tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "EX-4D"


class SubPanel(SidebarPanel):
    bl_parent_id = "EX4D_PT_main"


class EX4D_PT_main(SidebarPanel, bpy.types.Panel):
    bl_label = "EX-4D"
    bl_idname = "EX4D_PT_main"

    def draw(self, context):
        layout = self.layout
        p = prefs.get_prefs(context)
        row = layout.row(align=True)
        row.alert = p.connection_state == "error"
        row.label(text=prefs.connection_line(p),
                  icon={"ok": "CHECKMARK", "error": "ERROR"}.get(p.connection_state, "QUESTION"))
        if p.connection_verdict and p.connection_state != "unknown":
            details(row, p.connection_verdict, "Engine")
        row.operator("ex4d.test_connection", text="", icon="FILE_REFRESH")
        for module, features in deps.missing().items():
            box = layout.box()
            box.alert = True
            box.label(text=f"No {module} in this Blender", icon="ERROR")
            message_line(box, f"Needed for {features}. Install it for Blender's Python "
                              f"(Debian: apt install python3-{module}) or use the blender.org build.")


class EX4D_PT_scene(SubPanel, bpy.types.Panel):
    bl_label = "Scene"
    bl_idname = "EX4D_PT_scene"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.ex4d
        row = layout.row(align=True)
        row.operator("ex4d.import_scene", text="Import", icon="IMPORT")
        row.operator("ex4d.import_video", text="From video", icon="FILE_MOVIE")
        if settings.import_key:
            stage, percent, _eta = takes.live_progress(settings.import_key, settings.import_status or "upload")
            row = layout.row(align=True)
            row.label(text=f"{stage}: {percent:.0f}%", icon="TIME")
            row.operator("ex4d.cancel", text="", icon="CANCEL")
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(settings, "scene_collection", text="Scene")
        collection = settings.scene_collection
        if not takes.is_ex4d_collection(collection):
            return
        layout.label(text=f"{collection['ex4d_width']}x{collection['ex4d_height']}, "
                          f"{collection['ex4d_num_frames']} fr, {collection['ex4d_fps']:g} fps")
        if collection.get("ex4d_scene_id"):
            row = layout.row(align=True)
            row.label(text=f"On engine: {short(collection['ex4d_scene_id'], 20)}", icon="LINKED")
        elif not settings.import_key:
            column = layout.column(align=True)
            column.alert = True
            column.label(text="Not on the engine yet", icon="UNLINKED")
            column.operator("ex4d.upload_scene", text="Send to engine", icon="EXPORT")
        mesh_object = collection.get("ex4d_mesh")
        overlay_on = bool(mesh_object and mesh_object.get("ex4d_overlay"))
        row = layout.row(align=True)
        row.operator("ex4d.toggle_overlay", text="Hidden faces", depress=overlay_on, icon="OVERLAY")
        if viewport.skirt_collection(collection) is not None:
            row.operator("ex4d.viewport", text="Skirt", icon="MOD_SOLIDIFY",
                         depress=viewport.skirt_visible(context.scene, collection)).action = "TOGGLE_SKIRT"
        row = layout.row(align=True)
        row.operator("ex4d.viewport", text="Frame", icon="ZOOM_ALL").action = "FRAME"
        row.operator("ex4d.viewport", text="Shot view", icon="VIEW_CAMERA").action = "SHOT_VIEW"
        layout.operator("ex4d.viewport", text="Check coverage", icon="HIDE_OFF").action = "COVERAGE"
        line = coverage.summary(collection)
        if line:
            message_line(layout, line, icon="ERROR" if not line.startswith("0/") else "CHECKMARK")


class EX4D_PT_shot(SubPanel, bpy.types.Panel):
    bl_label = "Shot"
    bl_idname = "EX4D_PT_shot"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        settings = scene.ex4d
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(scene, "camera", text="Camera")  # exactly what Generate films through
        layout.prop(settings, "generator")
        if settings.generator == "wan":
            layout.prop(settings, "speed")
        layout.prop(settings, "seed")
        layout.prop(settings, "steps")
        layout.prop(settings, "prompt")
        layout.prop(settings, "want_conditioning", text="Conditioning")
        layout.prop(settings, "stereo")
        if settings.stereo:
            layout.prop(settings, "stereo_layout")
        layout.prop(settings, "output_dir")
        row = layout.row()
        row.scale_y = 1.4
        row.operator("ex4d.generate", text="Generate", icon="RENDER_ANIMATION")
        row = layout.row(align=True)
        row.operator("ex4d.export_trajectory", text="Export path", icon="EXPORT")
        row.operator("ex4d.import_trajectory", text="Import path", icon="IMPORT")


class EX4D_PT_takes(SubPanel, bpy.types.Panel):
    bl_label = "Takes"
    bl_idname = "EX4D_PT_takes"

    def draw(self, context):
        draw_takes(self.layout, context)


class EX4D_PT_sequencer(bpy.types.Panel):
    bl_label = "EX-4D Takes"
    bl_idname = "EX4D_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "EX-4D"

    def draw(self, context):
        draw_takes(self.layout, context)


classes = (EX4D_UL_takes, EX4D_PT_main, EX4D_PT_scene, EX4D_PT_shot, EX4D_PT_takes, EX4D_PT_sequencer)

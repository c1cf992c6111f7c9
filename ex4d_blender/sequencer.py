"""Results as VSE movie strips, on every Blender from 4.2 to 5.x.

4.2/4.3 keep strips in ``sequence_editor.sequences``; 4.4 added ``strips`` (``sequences``
deprecated) and 5.0 removed ``sequences``. In 5.x the sequencer edits
``context.sequencer_scene``, which may differ from the 3D scene. An empty ``strips`` is falsy
in 5.0, so the collection is chosen with ``hasattr``, never with ``or``.
"""

from __future__ import annotations


MAX_CHANNEL = 128


def sequencer_scene(context):
    """The scene whose VSE shows results: 5.x ``sequencer_scene`` if set, else the active scene."""
    return getattr(context, "sequencer_scene", None) or context.scene


def top_level_strips(scene):
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def free_channel(scene, frame_start: int, frame_end: int, lowest: int = 1) -> int:
    """The lowest channel >= ``lowest`` with no strip overlapping [frame_start, frame_end]."""
    busy = set()
    for strip in top_level_strips(scene):
        if strip.frame_final_start <= frame_end and strip.frame_final_end > frame_start:
            busy.add(strip.channel)
    for channel in range(lowest, MAX_CHANNEL + 1):
        if channel not in busy:
            return channel
    raise RuntimeError(f"No free VSE channel between {lowest} and {MAX_CHANNEL} for frames {frame_start}-{frame_end}")


def add_movie_strip(scene, filepath: str, name: str, frame_start: int, num_frames: int,
                    metadata: dict | None = None, channel: int | None = None):
    """Insert ``filepath`` as a movie strip of exactly ``num_frames`` frames from ``frame_start``.

    One video frame per scene frame (the engine renders one frame per trajectory camera, so no
    retiming): if the file holds more frames than the shot, the strip is trimmed; if it holds
    fewer, the strip's ``ex4d_warning`` says so. ``metadata`` goes into custom properties.
    Returns the strip.
    """
    frame_end = frame_start + num_frames - 1
    if channel is None:
        channel = free_channel(scene, frame_start, frame_end, lowest=2)
    strips = top_level_strips(scene)
    strip = strips.new_movie(name=name, filepath=filepath, channel=channel, frame_start=frame_start)
    file_frames = strip.frame_final_duration
    if file_frames > num_frames:
        strip.frame_final_duration = num_frames
    for key, value in (metadata or {}).items():
        strip[f"ex4d_{key}"] = value
    scene_fps = scene.render.fps / scene.render.fps_base
    strip["ex4d_file_fps"] = float(strip.fps)
    strip["ex4d_file_frames"] = int(file_frames)
    warnings = []
    if file_frames < num_frames:
        warnings.append(f"video has {file_frames} frames, the shot {num_frames}")
    if strip.fps and abs(strip.fps - scene_fps) > 1e-3:
        # Frames are placed one per scene frame; only the file's nominal rate differs.
        warnings.append(f"video is {strip.fps:g} fps, scene {scene_fps:g} fps: placed frame for frame")
    strip["ex4d_warning"] = "; ".join(warnings)
    return strip


def find_strip(scene, name: str):
    for strip in all_strips(scene):
        if strip.name == name:
            return strip
    return None


def remove_strip(scene, strip) -> None:
    top_level_strips(scene).remove(strip)


def strips_of_take(scene, take_key: str) -> list:
    return [s for s in all_strips(scene) if s.get("ex4d_take") == take_key]

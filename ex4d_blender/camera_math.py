"""Blender camera settings <-> OpenCV intrinsics ``K``: pure maths, no bpy.

Follows Blender's own projection (``BKE_camera_sensor_fit``, ``BKE_camera_sensor_size`` and
``BKE_camera_params_compute_viewplane`` in ``blenkernel/intern/camera.cc``), so the ``K`` it
returns reprojects exactly like ``bpy_extras.object_utils.world_to_camera_view``. Pixel
coordinates follow the contract: origin at the top-left *corner*, y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


class CameraSettingsError(ValueError):
    """Blender camera settings that no pinhole ``K`` can express (the message says which).

    ``user_error`` tells ``reporting`` it is the artist's to fix (this module stays importable alone).
    """

    user_error = True


@dataclass(frozen=True)
class BlenderCameraSettings:
    """What Blender needs to project through a perspective camera at one frame.

    Attributes:
        lens_mm: focal length in millimetres.
        sensor_width_mm, sensor_height_mm: ``camera.data.sensor_width/height``.
        sensor_fit: 'AUTO', 'HORIZONTAL' or 'VERTICAL'.
        shift_x, shift_y: lens shift as a fraction of the larger view dimension (+y is up).
        resolution_x, resolution_y, resolution_percentage: ``scene.render`` settings.
        pixel_aspect_x, pixel_aspect_y: ``scene.render.pixel_aspect_x/y``.
    """

    lens_mm: float
    sensor_width_mm: float
    sensor_height_mm: float
    sensor_fit: str
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    resolution_percentage: int = 100
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0

    @property
    def width(self) -> int:
        """Rendered width in pixels (Blender truncates ``res * pct / 100``)."""
        return self.resolution_x * self.resolution_percentage // 100

    @property
    def height(self) -> int:
        return self.resolution_y * self.resolution_percentage // 100


def intrinsics_from_blender(settings: BlenderCameraSettings) -> np.ndarray:
    """Blender camera + render settings -> (3, 3) float64 ``K`` for a ``width`` x ``height`` image."""
    s = settings
    if s.sensor_fit not in SENSOR_FITS:
        raise CameraSettingsError(f"sensor_fit must be one of {SENSOR_FITS}, got {s.sensor_fit!r}")
    if s.lens_mm <= 0 or s.sensor_width_mm <= 0 or s.sensor_height_mm <= 0:
        raise CameraSettingsError(
            f"lens and sensor must be positive, got lens={s.lens_mm} mm, "
            f"sensor={s.sensor_width_mm}x{s.sensor_height_mm} mm"
        )
    width, height = s.width, s.height
    if width < 1 or height < 1:
        raise CameraSettingsError(f"render size must be at least 1x1 pixels, got {width}x{height}")
    ycor = s.pixel_aspect_y / s.pixel_aspect_x
    # Which sensor length applies depends on the *setting*: only VERTICAL uses sensor_height.
    sensor_mm = s.sensor_height_mm if s.sensor_fit == "VERTICAL" else s.sensor_width_mm
    # Which image axis it spans: AUTO picks the longer side in display (aspect-corrected) units.
    fit = s.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if s.pixel_aspect_x * width >= s.pixel_aspect_y * height else "VERTICAL"
    view_px = float(width) if fit == "HORIZONTAL" else ycor * height
    focal_x_px = s.lens_mm * view_px / sensor_mm
    focal_y_px = focal_x_px / ycor
    cx = width / 2.0 - s.shift_x * view_px
    cy = height / 2.0 + s.shift_y * view_px / ycor  # Blender's shift is +up, image y is down
    return np.array([[focal_x_px, 0.0, cx], [0.0, focal_y_px, cy], [0.0, 0.0, 1.0]])


def blender_settings_from_intrinsics(
    K: np.ndarray, width: int, height: int, sensor_width_mm: float = 36.0
) -> dict:
    """Inverse of :func:`intrinsics_from_blender` with sensor fit forced to HORIZONTAL.

    Returns camera data values (``lens``, ``sensor_width``, ``sensor_fit``, ``shift_x``,
    ``shift_y``) and render values (``pixel_aspect_x``, ``pixel_aspect_y``); ``fx != fy`` is
    expressed as a pixel aspect, as Blender has no other way to hold it.
    """
    K = np.asarray(K, dtype=np.float64)
    focal_x_px, focal_y_px, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if focal_x_px <= 0 or focal_y_px <= 0:
        raise CameraSettingsError(f"focal lengths must be positive, got fx={focal_x_px}, fy={focal_y_px}")
    ycor = focal_x_px / focal_y_px
    if ycor >= 1.0:
        aspect_x, aspect_y = 1.0, ycor
    else:
        aspect_x, aspect_y = 1.0 / ycor, 1.0
    view_px = float(width)
    return {
        "lens": focal_x_px * sensor_width_mm / view_px,
        "sensor_width": sensor_width_mm,
        "sensor_fit": "HORIZONTAL",
        "shift_x": (width / 2.0 - cx) / view_px,
        "shift_y": (cy - height / 2.0) * ycor / view_px,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }

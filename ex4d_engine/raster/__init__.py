"""Rasterisers for DW-mesh sequences: same input, same pictures.

* ``opengl`` -- moderngl on a headless EGL context (Mesa llvmpipe on a CPU, the NVIDIA driver on a
  GPU). Licence-clean (MIT moderngl, Mesa); the default where CUDA is absent.
* ``nvdiffrast`` -- NVIDIA's CUDA rasteriser, the seed's choice. Non-commercial licence: optional,
  imported lazily, never shipped.
"""

from __future__ import annotations

RENDERERS = ("auto", "opengl", "nvdiffrast")


def get_rasterizer(name: str = "auto", device: str = "auto"):
    """Make a rasteriser by name. ``auto``: nvdiffrast when it imports and CUDA is there, else OpenGL."""
    from ..errors import InputError, ResourceError

    if name not in RENDERERS:
        raise InputError(f"unknown renderer {name!r}; choose one of {', '.join(RENDERERS)}")
    if name in ("auto", "nvdiffrast"):
        from . import nvdiffrast_backend

        problem = nvdiffrast_backend.unavailable_reason()
        if problem is None:
            return nvdiffrast_backend.NvdiffrastRasterizer(device="cuda" if device == "auto" else device)
        if name == "nvdiffrast":
            raise ResourceError(f"renderer 'nvdiffrast' is not available: {problem}. "
                                "Use --renderer opengl, or install nvdiffrast (README, GPU install).")
    from .opengl_backend import OpenGLRasterizer

    return OpenGLRasterizer()


__all__ = ["RENDERERS", "get_rasterizer"]

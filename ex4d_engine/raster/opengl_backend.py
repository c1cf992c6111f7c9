"""OpenGL rasteriser through moderngl on a headless EGL context (licence-clean).

Runs on Mesa llvmpipe without a GPU (CI) and on the NVIDIA EGL driver with one. Renders into a
float32 RGBA target so vertex colours 0..255 interpolate without quantisation, and a float32
depth buffer where the driver offers one. No culling: the DW-mesh's winding is not consistent.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..errors import ResourceError
from .base import RenderResult

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
in vec3 in_position;
in vec4 in_rgba;
out vec4 v_rgba;
void main() {
    v_rgba = in_rgba;
    gl_Position = mvp * vec4(in_position, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec4 v_rgba;
out vec4 out_rgba;
void main() { out_rgba = v_rgba; }
"""


class OpenGLRasterizer:
    name = "opengl"

    def __init__(self) -> None:
        try:
            import moderngl

            self._ctx = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as exc:  # missing libEGL / no driver: say what to install
            raise ResourceError(
                f"OpenGL renderer unavailable ({exc}). On Debian/Ubuntu install EGL and Mesa: "
                "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from None
        self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.renderer_string = self._ctx.info.get("GL_RENDERER", "unknown")

    def render(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        attributes: torch.Tensor,
        mvp: np.ndarray,
        width: int,
        height: int,
        progress: Optional[Callable[[int], None]] = None,
    ) -> RenderResult:
        import moderngl

        ctx = self._ctx
        n = len(mvp)
        static = vertices.shape[0] == 1
        colour = ctx.texture((width, height), 4, dtype="f4")
        depth = ctx.depth_texture((width, height))
        fbo = ctx.framebuffer(color_attachments=[colour], depth_attachment=depth)
        index_buffer = ctx.buffer(faces.detach().cpu().numpy().astype(np.int32).tobytes())
        position_buffer = ctx.buffer(reserve=vertices.shape[1] * 12)
        rgba_buffer = ctx.buffer(reserve=vertices.shape[1] * 16)
        vao = ctx.vertex_array(
            self._program,
            [(position_buffer, "3f", "in_position"), (rgba_buffer, "4f", "in_rgba")],
            index_buffer=index_buffer,
            index_element_size=4,
        )
        out = np.empty((n, height, width, 4), dtype=np.float32)
        try:
            fbo.use()
            ctx.viewport = (0, 0, width, height)
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            for i in range(n):
                if i == 0 or not static:
                    position_buffer.write(_f32(vertices[0 if static else i]))
                    rgba_buffer.write(_f32(attributes[0 if static else i]))
                # GLSL mat4 uniforms are column-major
                self._program["mvp"].write(np.asarray(mvp[i], dtype=np.float32).T.tobytes())
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                vao.render(moderngl.TRIANGLES)
                # glReadPixels' first row is NDC y = -1, which is image row 0 by our projection
                out[i] = np.frombuffer(fbo.read(components=4, dtype="f4"), dtype=np.float32).reshape(height, width, 4)
                if progress is not None:
                    progress(i + 1)
        finally:
            for resource in (vao, index_buffer, position_buffer, rgba_buffer, fbo, colour, depth):
                resource.release()
        return RenderResult(torch.from_numpy(out))


def _f32(tensor: torch.Tensor) -> bytes:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()

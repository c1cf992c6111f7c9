"""ex4d engine: cameras and trajectories, video I/O, depth, DW-mesh, renderers, conditioning,
generation, pipeline and the ``ex4d`` CLI. Never imports bpy; importing this package is cheap
(heavy modules load on first use)."""

__version__ = "0.1.0"

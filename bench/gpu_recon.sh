#!/usr/bin/env bash
# The GPU-machine run behind docs/PERFORMANCE.md "Geometry": builds nvdiffrast from a source checkout in
# third_party/nvdiffrast (not committed: NVIDIA's non-commercial licence), runs the renderer tests with both
# backends, then bench/recon_bench.py. Expects the EGL loader debs in .gl/ and Python 3.12 wheels of
# moderngl, glcontext and imageio-ffmpeg in .whl/render/ (see the device notes in docs/PERFORMANCE.md).
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$__EGL_VENDOR_LIBRARY_FILENAMES" ] || unset __EGL_VENDOR_LIBRARY_FILENAMES
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/render/*.whl
export PYTHONPATH=/tmp/site:$PWD
( cd third_party/nvdiffrast && python3 -m pip install -q --no-build-isolation . ) > "$OUT/nvdiffrast_build.log" 2>&1 \
  || { echo "nvdiffrast build failed"; tail -20 "$OUT/nvdiffrast_build.log"; }
python3 -c "import nvdiffrast.torch, moderngl; print('nvdiffrast + moderngl import ok')"
python3 -m pytest -p no:cacheprovider -q tests/engine/test_render.py tests/engine/test_mesh.py 2>&1 | tail -15
python3 bench/recon_bench.py --renderers nvdiffrast,opengl --repeats 5 --json "$OUT/recon_gpu.json"

#!/usr/bin/env bash
# Wheels for running `ex4d serve --ray` / bench/ray_farm.py on a CPython 3.12 x86_64 GPU host without internet:
# Ray 2.60.0 and the dependencies that host's image lacks (it has click, filelock, msgpack, packaging, protobuf,
# pyyaml, requests, attrs). The Ray wheel (79 MB) loses its Java jar (31 MB, only for Java workers) to fit a
# 64 MiB transfer. Install there with:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
dir="${1:?usage: bench/ray_wheels.sh DIR}"
mkdir -p "$dir"
platforms="--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64"
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
          $platforms -d "$dir" "$@"; }
get ray==2.60.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
python3 - "$dir" <<'PY'
import glob, os, sys, zipfile
for wheel in glob.glob(os.path.join(sys.argv[1], "ray-2.60.0-*.whl")):
    slim = wheel + ".slim"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not item.filename.startswith("ray/jars/"):
                dst.writestr(item, src.read(item.filename))
    os.replace(slim, wheel)
PY
du -sh "$dir"

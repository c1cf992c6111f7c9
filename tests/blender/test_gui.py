"""The add-on in a real GUI Blender (issue 16): Debian trixie's ``blender`` in a chroot under Xvfb, real X input.

Runs tests/blender/gui/run_gui_test.py (it builds or reuses the cached chroot at /var/cache/ex4d-gui-chroot:
root and Debian's mirror needed the first time, a few minutes; then about two minutes a run). Screenshots
and Blender's logs stay in ``out/gui/`` (``$EX4D_GUI_ARTEFACTS``) for CI to keep as artefacts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bpy_testing import REPO

OUT = os.environ.get("EX4D_GUI_ARTEFACTS", os.path.join(REPO, "out", "gui"))
#: Main-loop gaps while a job runs, measured by a 20 ms timer. Before the fix: 0.8 s median, 3.4 s max (every
#: area redrawn every 0.2 s, take properties written on each progress poll). Measured after it on the 2-core
#: development machine under load (load average ~6.5): 0.40 s median, 0.92 s max (idle: 0.021 s, 0.025 s).
MAX_MEDIAN_GAP_S = 0.5
MAX_GAP_S = 1.5


def steps_of(phase: dict) -> dict:
    assert phase["ok"], phase.get("error", "") + "\n" + phase.get("log_tail", "")
    return {step["step"]: step for step in phase["steps"]}


def test_real_gui_import_keyframe_generate_strip():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "blender", "gui", "run_gui_test.py"),
                           "--out", OUT], capture_output=True, text=True, timeout=2700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.load(open(os.path.join(OUT, "result.json")))
    assert result["blender"].startswith("Blender 4.3"), result["blender"]  # Debian trixie's blender
    assert result["install"]["rc"] == 0 and result["splash_off"]

    # A distribution's Blender without numpy: the add-on enables and says what is missing, for what.
    nonumpy = steps_of(result["nonumpy"])
    enabled = nonumpy["enabled"]
    assert enabled["operators"] and not enabled["numpy_importable"]
    assert "Generate" in enabled["missing"]["numpy"]
    clicked = nonumpy["generate_clicked"]
    assert any("Generate needs the Python module 'numpy'" in line for line in clicked["info"]), clicked["info"]
    assert clicked["status_bar"]["red"] > 50 and clicked["takes"] == []

    main = steps_of(result["main"])
    assert main["numpy_added"]["missing"] == {}
    imported = main["imported"]
    assert imported["collection"] == "EX4D garden_clip"  # named after the clip
    assert any("EX-4D scene imported as 'EX4D garden_clip'" in line for line in imported["info"]), imported["info"]

    # Real click on Generate with a wrong token: refused at once, in the Info log and the status bar,
    # no failed take left behind, the connection line no longer says "ready".
    wrong = main["wrong_token"]
    assert any(line.startswith("Generate: The engine at") and "rejected the token" in line
               for line in wrong["info"]), wrong["info"]
    assert wrong["status_bar"]["red"] > 50 and wrong["takes"] == []
    assert wrong["connection"] == "Engine problem"

    # Real click on Generate: the take runs, its progress shows, the strip arrives, the reports say so.
    done = main["generated"]
    assert done["state"] == "succeeded", done
    take = done["takes"][-1]
    assert take["status"] == "succeeded" and take["progress"] == 100.0 and take["result_path"]
    assert done["strips"] == [{"name": take["name"], "type": "MOVIE", "channel": done["strips"][0]["channel"],
                               "start": 1, "duration": 9}]
    assert any(f"EX-4D {take['name']} done: strip" in line for line in done["info"]), done["info"]
    assert done["status_bar"]["bright"] > 0
    # The main loop stays responsive while the job runs (only the sidebars redraw on progress).
    gaps = done["gaps_job"]
    assert gaps["n"] >= 5, gaps
    assert gaps["median_s"] <= MAX_MEDIAN_GAP_S and gaps["max_s"] <= MAX_GAP_S, (gaps, done["gaps_idle"])
    screenshots = set(result["nonumpy"]["screenshots"]) | set(result["main"]["screenshots"])
    assert all(os.path.getsize(os.path.join(OUT, name)) > 10_000 for name in screenshots)
    assert any(name.endswith("-done.png") for name in screenshots)

"""One real-GUI session inside the trixie chroot (python3.13, standard library only).

Installs the built extension into Debian's ``blender`` with ``blender --command extension install-file``,
turns the splash off, starts Xvfb (Mesa llvmpipe) and runs gui_driver.py twice: once as a distribution's
Blender is (no numpy: the add-on must enable and say what is missing), once with numpy on Blender's path
(the full import -> keyframe -> Generate -> strip flow against the engine on the host's loopback).
Prints ``EX4D_RESULT <json>``. Started by .ci/gui_test.sh through .ci/gui_chroot.sh.

Args: --zip ZIP --url URL --token TOKEN --clip MP4 --depth DIR --out SCREENSHOT_DIR --workdir DIR
      [--numpy-path /opt/ex4d-numpy]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WIDTH, HEIGHT = 1280, 800


def free_display() -> int:
    """A display number no X server uses: no lock file here and no (abstract) socket in the network
    namespace, which the chroot shares with the host and its other X servers."""
    sockets = open("/proc/net/unix").read()
    for number in random.sample(range(100, 600), 500):
        if not os.path.exists(f"/tmp/.X{number}-lock") and f"/tmp/.X11-unix/X{number}\n" not in sockets:
            return number
    raise RuntimeError("no free X display number")


def start_xvfb(env: dict):
    """Xvfb (Mesa llvmpipe for GL) on a free display; returns (process, DISPLAY) once it answers."""
    for _attempt in range(3):
        display = f":{free_display()}"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and xvfb.poll() is None:
            probe = subprocess.run(["xdotool", "getdisplaygeometry"], env={**env, "DISPLAY": display},
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.split() == [str(WIDTH), str(HEIGHT)]:
                return xvfb, display
            time.sleep(0.2)
        xvfb.kill()
    raise RuntimeError("Xvfb did not start")


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("zip", "url", "token", "clip", "depth", "out", "workdir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--numpy-path", default="/opt/ex4d-numpy")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    home = os.path.join(args.workdir, "home")
    os.makedirs(home, exist_ok=True)
    # Mesa's shader cache lives in the (cached) chroot: only the first run ever compiles llvmpipe shaders.
    env = {**os.environ, "HOME": home, "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1",
           "MESA_SHADER_CACHE_DIR": "/var/cache/ex4d-mesa-shaders"}
    env.pop("PYTHONPATH", None)
    out: dict = {"blender": subprocess.run(["blender", "--version"], capture_output=True, text=True,
                                           env=env).stdout.splitlines()[0]}
    install = subprocess.run(["blender", "--command", "extension", "install-file", "-r", "user_default", "-e",
                              args.zip], capture_output=True, text=True, env=env, timeout=120)
    out["install"] = {"rc": install.returncode, "output": (install.stdout + install.stderr)[-800:]}
    splash = subprocess.run(["blender", "-b", "--python-expr",
                             "import bpy; bpy.context.preferences.view.show_splash = False; "
                             "bpy.ops.wm.save_userpref()"], capture_output=True, text=True, env=env, timeout=120)
    out["splash_off"] = splash.returncode == 0

    xvfb, env["DISPLAY"] = start_xvfb(env)
    out["display"] = env["DISPLAY"]
    try:
        for phase in ("nonumpy", "main"):
            result_path = os.path.join(args.workdir, f"{phase}.json")
            if os.path.exists(result_path):
                os.remove(result_path)
            driver_args = ["--phase", phase, "--url", args.url, "--token", args.token, "--clip", args.clip,
                           "--depth", args.depth, "--out", args.out, "--result", result_path]
            if phase == "main":
                driver_args += ["--numpy-path", args.numpy_path]
            log_path = os.path.join(args.out, f"blender-{phase}.log")
            started = time.monotonic()
            with open(log_path, "w") as log:
                proc = subprocess.run(["blender", "--window-geometry", "0", "0", str(WIDTH), str(HEIGHT),
                                       "--python", os.path.join(HERE, "gui_driver.py"), "--", *driver_args],
                                      stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
            phase_result = (json.load(open(result_path)) if os.path.exists(result_path)
                            else {"ok": False, "error": "the driver wrote no result"})
            phase_result["blender_rc"] = proc.returncode
            phase_result["wall_s"] = round(time.monotonic() - started, 1)
            phase_result["log_tail"] = open(log_path, errors="replace").read()[-3000:]
            out[phase] = phase_result
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    print("EX4D_RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

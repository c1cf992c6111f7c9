"""Per-job overhead of ``ex4d serve``: submit -> done for a tiny scene with the draft generator.

    python bench/server_overhead.py [--jobs 30] [--frames 9] [--json out.json]

A real server on 127.0.0.1 (subprocess), a 9-frame 64x48 clip, jobs one after another. For each job:
``submit``: POST /v1/jobs answer time; ``to_done_sse``: submit -> terminal server-sent event (what the
Blender add-on sees); ``to_done_poll``: submit -> GET shows succeeded (10 ms polling); ``worker``:
started_at -> finished_at on the job row (the engine work: render, draft inpaint, three ffmpeg writes);
``overhead`` = to_done_poll - worker (queue pick-up, store writes, HTTP). Medians and p90 after 3 warm-ups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime

import requests

from server_harness import machine, percentile, start, trajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    server, tmp = start()
    try:
        scene = server.ready_scene(frames=args.frames)
        body = {"scene_id": scene["id"], "trajectory": trajectory(scene, args.frames), "options": {}}
        session = requests.Session()
        rows = []
        for i in range(args.jobs + 3):
            use_sse = i % 2 == 0
            t0 = time.perf_counter()
            job = session.post(server.url + "/v1/jobs", json=body, headers=server.headers, timeout=30).json()
            t_submit = time.perf_counter() - t0
            done = server.follow(job["id"], session) if use_sse else server.wait(job["id"])
            t_done = time.perf_counter() - t0
            assert done["state"] == "succeeded", done
            row = server.wait(job["id"])
            worker = (datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["started_at"]))
            if i >= 3:
                rows.append({"sse": use_sse, "submit": t_submit, "done": t_done, "worker": worker.total_seconds()})
        health = [_timed(lambda: session.get(server.url + "/v1/health", timeout=10)) for _ in range(50)]
        get_job = [_timed(lambda: session.get(f"{server.url}/v1/jobs/{job['id']}", headers=server.headers,
                                              timeout=10)) for _ in range(50)]
    finally:
        server.stop()
        tmp.cleanup()

    poll = [r for r in rows if not r["sse"]]
    sse = [r for r in rows if r["sse"]]
    result = {
        "machine": machine(), "jobs": len(rows), "frames": args.frames, "size": "64x64 (64x48 source)",
        "submit_ms_median": 1000 * statistics.median(r["submit"] for r in rows),
        "to_done_sse_ms_median": 1000 * statistics.median(r["done"] for r in sse),
        "to_done_sse_ms_p90": 1000 * percentile([r["done"] for r in sse], 90),
        "to_done_poll_ms_median": 1000 * statistics.median(r["done"] for r in poll),
        "to_done_poll_ms_p90": 1000 * percentile([r["done"] for r in poll], 90),
        "worker_ms_median": 1000 * statistics.median(r["worker"] for r in rows),
        "worker_ms_p90": 1000 * percentile([r["worker"] for r in rows], 90),
        "overhead_ms_median": 1000 * statistics.median(r["done"] - r["worker"] for r in poll),
        "overhead_sse_ms_median": 1000 * statistics.median(r["done"] - r["worker"] for r in sse),
        "health_ms_median": 1000 * statistics.median(health),
        "get_job_ms_median": 1000 * statistics.median(get_job),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


def _timed(call) -> float:
    t0 = time.perf_counter()
    response = call()
    assert response.status_code == 200, response.text
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

"""50 clients against one ``ex4d serve``: every job finishes, the API stays responsive.

    python bench/server_load.py [--clients 50] [--polls 20] [--frames 3] [--json out.json]

A real server on 127.0.0.1 (subprocess) with one worker, a 9-frame 64x48 ready scene. Each client
(a thread with its own keep-alive connection) submits one draft job, follows it over server-sent
events until it ends, and meanwhile another thread per client polls GET /v1/jobs/{id} ``--polls``
times, 50 ms apart (bounded: no open-ended hammering). Reports submit and poll latency percentiles
under load, the wall time until the last job finished, jobs per second, and any non-2xx answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from server_harness import machine, percentile, start, trajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    server, tmp = start()
    lock = threading.Lock()
    submit_s: list[float] = []
    poll_s: list[float] = []
    errors: list[str] = []
    states: list[str] = []
    try:
        scene = server.ready_scene()
        body = {"scene_id": scene["id"], "trajectory": trajectory(scene, args.frames), "options": {}}
        barrier = threading.Barrier(args.clients)

        def client(index: int) -> None:
            session = requests.Session()
            barrier.wait()
            t0 = time.perf_counter()
            response = session.post(server.url + "/v1/jobs", json=body, headers=server.headers, timeout=60)
            elapsed = time.perf_counter() - t0
            if response.status_code != 202:
                with lock:
                    errors.append(f"submit {response.status_code}: {response.text[:200]}")
                return
            job_id = response.json()["id"]
            poller = threading.Thread(target=poll, args=(job_id,))
            poller.start()
            final = server.follow(job_id, session)
            poller.join()
            with lock:
                submit_s.append(elapsed)
                states.append(final.get("state", "?"))

        def poll(job_id: str) -> None:
            session = requests.Session()
            for _ in range(args.polls):
                t0 = time.perf_counter()
                response = session.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers, timeout=60)
                with lock:
                    poll_s.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors.append(f"poll {response.status_code}")
                time.sleep(0.05)

        start_time = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall = time.perf_counter() - start_time
    finally:
        server.stop()
        tmp.cleanup()

    result = {
        "machine": machine(), "clients": args.clients, "frames_per_job": args.frames,
        "jobs_succeeded": states.count("succeeded"), "errors": errors[:10], "error_count": len(errors),
        "wall_s": wall, "jobs_per_s": len(states) / wall,
        "submit_ms_p50": 1000 * statistics.median(submit_s), "submit_ms_p95": 1000 * percentile(submit_s, 95),
        "submit_ms_max": 1000 * max(submit_s),
        "poll_requests": len(poll_s), "poll_ms_p50": 1000 * statistics.median(poll_s),
        "poll_ms_p95": 1000 * percentile(poll_s, 95), "poll_ms_p99": 1000 * percentile(poll_s, 99),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    assert result["jobs_succeeded"] == args.clients and not errors, result


if __name__ == "__main__":
    main()

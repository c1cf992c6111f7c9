"""Shots per minute of ``ex4d serve --ray`` on a real Ray cluster, against one actor; node loss on demand.

Starts a local Ray cluster of ``--nodes`` simulated nodes (``server.ray_local_cluster``: a head without
GPUs standing for the server host, each node a separate raylet with ``--group-size`` GPUs), then:

1. baseline: a server limited to one actor (``--ray-actors 1``: one node's worth) runs the jobs;
2. farm: a server with one actor per node runs the same jobs, submitted by ``--clients`` concurrent
   clients; with ``--kill-node-after K`` the node of a busy actor is killed once K jobs are done.

Each run first warms every actor up with one job (models load, caches fill), then times the jobs
from the first submit to the last result. Prints one JSON line:
``{"nodes", "jobs", "done", "lost", "duplicated", "jobs_per_min", "speedup_vs_1_node"}``; ``--out``
writes it with the details (machine, per-run timings, counters). ``lost``: jobs that did not end
succeeded; ``duplicated``: results committed more than once or arriving for a run that no longer
owned its job (the server's counters), plus job ids handed out twice.

    # CPU (this machine): the draft generator on a small clip
    python bench/ray_farm.py --nodes 2 --jobs 20 --out bench/results/ray_farm_cpu.json
    # a multi-GPU host: one real GPU per simulated node, Wan with random full-size weights (docs/cluster.md)
    python bench/ray_farm.py --nodes 4 --jobs 16 --distinct-gpus --generator wan --models-dir MODELS \\
        --option speed=turbo --frames 49 --width 512 --height 512 --out OUT/ray_farm_gpu.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from server_harness import BenchServer, machine, trajectory  # noqa: E402

from server.ray_local_cluster import LocalRayCluster  # noqa: E402


class FarmServer(BenchServer):
    """``ex4d serve --ray ADDRESS`` with the cluster's environment (its Ray token)."""

    def __init__(self, data_dir: Path, cluster: LocalRayCluster, actors: int, extra: list[str]):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True)
        args = ["--ray", cluster.address, "--ray-actors", str(actors), *extra]
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ex4d_engine.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *args],
            cwd=REPO, env=dict(os.environ, **cluster.env, PYTHONPATH=str(REPO)),
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)
        info = data_dir / "server.json"
        deadline = time.monotonic() + 120
        while not (info.exists() and json.loads(info.read_text())["pid"] == self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log_path.read_text())
            time.sleep(0.1)
        self.url = json.loads(info.read_text())["url"]
        self.headers = {"Authorization": "Bearer " + (data_dir / "token").read_text().strip()}
        self.wait_actors(actors)

    def cluster(self) -> dict[str, Any]:
        return requests.get(self.url + "/v1/health", timeout=10).json()["cluster"]

    def wait_actors(self, count: int, timeout_s: float = 900) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(a["state"] in ("idle", "busy") for a in self.cluster()["actors"]) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{count} actors not ready:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.2)

    def submit(self, scene: dict, frames: int, options: dict[str, Any]) -> str:
        body = {"scene_id": scene["id"], "trajectory": trajectory(scene, frames), "options": options}
        response = requests.post(self.url + "/v1/jobs", json=body, headers=self.headers, timeout=60)
        response.raise_for_status()
        return response.json()["id"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)


def run_jobs(server: FarmServer, scene: dict, args: argparse.Namespace, cluster: Optional[LocalRayCluster],
             kill_after: Optional[int]) -> dict[str, Any]:
    """Warm every actor, then time ``args.jobs`` jobs from ``args.clients`` clients."""
    options = dict(args.options, generator=args.generator)
    actors = len([a for a in server.cluster()["actors"] if a["state"] in ("idle", "busy")])
    warm = [server.submit(scene, args.frames, options) for _ in range(actors)]
    warm_states = [server.wait(j, timeout_s=args.timeout_s)["state"] for j in warm]
    before = server.cluster()["counters"]

    done_count = 0
    killed: dict[str, Any] = {}
    lock = threading.Lock()

    def finished() -> None:
        nonlocal done_count
        with lock:
            done_count += 1
            if kill_after is not None and done_count == kill_after and not killed:
                busy = [a for a in server.cluster()["actors"] if a["state"] == "busy" and a["node_id"]]
                if busy:
                    killed.update(node_id=busy[0]["node_id"], job_id=busy[0]["job_id"], at_done=done_count)
                    cluster.kill_node(busy[0]["node_id"])

    def client(k: int) -> list[dict]:
        share = [i for i in range(args.jobs) if i % args.clients == k]
        ids = [server.submit(scene, args.frames, dict(options, seed=i)) for i in share]
        results = []
        for job_id in ids:
            job = server.wait(job_id, timeout_s=args.timeout_s)
            finished()
            results.append(job)
        return results

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
        jobs = [job for result in pool.map(client, range(args.clients)) for job in result]
    wall = time.perf_counter() - started
    after = server.cluster()["counters"]
    done = sum(j["state"] == "succeeded" for j in jobs)
    ids = [j["id"] for j in jobs]
    committed = after["results_committed"] - before["results_committed"]
    duplicated = (max(0, committed - done) + after["results_discarded"] - before["results_discarded"]
                  + len(ids) - len(set(ids)))
    return {"actors": actors, "warmup_states": warm_states, "jobs": len(jobs), "done": done,
            "lost": len(jobs) - done, "duplicated": duplicated, "wall_s": round(wall, 2),
            "jobs_per_min": round(done / wall * 60, 2), "retried": sum(j["attempts"] > 1 for j in jobs),
            "counters": {k: after[k] - before.get(k, 0) for k in after}, "killed": killed or None,
            "states": {s: sum(j["state"] == s for j in jobs) for s in {j["state"] for j in jobs}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--kill-node-after", type=int, default=None, metavar="K",
                        help="kill the node of a busy actor once K jobs are done")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--group-size", type=int, default=1, help="GPUs per node and per actor")
    parser.add_argument("--distinct-gpus", action="store_true",
                        help="node i gets the i-th real GPU(s) (CUDA_VISIBLE_DEVICES): on a multi-GPU host")
    parser.add_argument("--generator", default="draft")
    parser.add_argument("--models-dir", default=None, help="the Wan model folder (every node reads it)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a job option (JSON value or string), e.g. speed=turbo, profile=full, steps=4")
    parser.add_argument("--frames", type=int, default=17, help="frames per shot (and of the clip)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--object-store-mb", type=int, default=100)
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-actor run (speedup is null)")
    parser.add_argument("--timeout-s", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            args.options[key] = json.loads(value)
        except json.JSONDecodeError:
            args.options[key] = value

    extra = ["--group-size", str(args.group_size)]
    if args.models_dir:
        extra += ["--models-dir", args.models_dir]
    tmp = Path(tempfile.mkdtemp(prefix="ex4d-ray-farm-"))
    started = time.perf_counter()
    with LocalRayCluster(nodes=args.nodes, gpus_per_node=args.group_size, cpus_per_node=1,
                         object_store_mb=args.object_store_mb, distinct_gpus=args.distinct_gpus,
                         log_path=tmp / "cluster.log") as cluster:
        cluster_s = time.perf_counter() - started
        runs: dict[str, Any] = {}
        if not args.no_baseline and args.nodes > 1:
            server = FarmServer(tmp / "baseline", cluster, 1, extra)
            try:
                scene = server.ready_scene(args.frames, args.width, args.height)
                runs["one_actor"] = run_jobs(server, scene, args, None, None)
            finally:
                server.stop()
        server = FarmServer(tmp / "farm", cluster, args.nodes, extra)
        try:
            scene = server.ready_scene(args.frames, args.width, args.height)
            runs["farm"] = run_jobs(server, scene, args, cluster, args.kill_node_after)
        finally:
            server.stop()
    farm = runs["farm"]
    baseline = runs.get("one_actor") or (farm if args.nodes == 1 else None)
    speedup = round(farm["jobs_per_min"] / baseline["jobs_per_min"], 2) if baseline and baseline["done"] else None
    line = {"nodes": args.nodes, "jobs": args.jobs, "done": farm["done"], "lost": farm["lost"],
            "duplicated": farm["duplicated"], "jobs_per_min": farm["jobs_per_min"], "speedup_vs_1_node": speedup}
    print(json.dumps(line), flush=True)
    if args.out:
        details = dict(line, runs=runs, cluster_start_s=round(cluster_s, 1), machine=machine(),
                       load_average_1min_at_end=round(os.getloadavg()[0], 1),
                       date=datetime.date.today().isoformat(), command="python " + " ".join(sys.argv),
                       generator=args.generator, options=args.options, frames=args.frames,
                       size=f"{args.width}x{args.height}", clients=args.clients, group_size=args.group_size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(details, indent=2) + "\n")


if __name__ == "__main__":
    main()

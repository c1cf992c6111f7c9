"""A real Ray cluster of simulated nodes on this machine, for the tests and bench/ray_farm.py.

``ray.cluster_utils.Cluster`` starts a head (no GPU: it stands for the server host) and N nodes,
each a separate raylet declaring ``--gpus-per-node`` logical GPUs. It runs in a child process
(``python -m server.ray_local_cluster``) driven over stdin/stdout, so Ray's global state and its
token-auth environment never enter the caller's process, and a node can be killed like a lost host.

    with LocalRayCluster(nodes=2) as cluster:       # token auth on: RAY_AUTH_MODE=token + a fresh token
        env = cluster.env                           # for `ex4d serve --ray <cluster.address>`
        cluster.kill_node(node_id); cluster.add_node()

``distinct_gpus=True`` gives node i ``CUDA_VISIBLE_DEVICES=i`` (on one multi-GPU machine: one real GPU
per simulated node, as on separate hosts).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180


class LocalRayCluster:
    def __init__(self, nodes: int = 2, gpus_per_node: int = 1, cpus_per_node: int = 1, object_store_mb: int = 80,
                 distinct_gpus: bool = False, token_auth: bool = True, log_path: Optional[Path] = None):
        self.args = ["--nodes", str(nodes), "--gpus-per-node", str(gpus_per_node), "--cpus-per-node",
                     str(cpus_per_node), "--object-store-mb", str(object_store_mb)]
        if distinct_gpus:
            self.args.append("--distinct-gpus")
        #: What a client of this cluster (``ex4d serve --ray``) adds to its environment.
        self.env = {"RAY_USAGE_STATS_ENABLED": "0"}
        if token_auth:
            self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(24))
        else:
            self.env["RAY_AUTH_MODE"] = "disabled"
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.address = ""
        self.nodes: list[str] = []

    def start(self) -> "LocalRayCluster":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(self.env, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "server.ray_local_cluster", *self.args], cwd=REPO,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     text=True, bufsize=1)
        started = self._answer()
        self.address, self.nodes = started["address"], started["nodes"]
        return self

    def kill_node(self, node_id: str) -> None:
        """The node's raylet and its workers die at once (as a host that loses power)."""
        self._send(f"kill {node_id}")
        self.nodes.remove(node_id)

    def add_node(self) -> str:
        node_id = self._send("add")["added"]
        self.nodes.append(node_id)
        return node_id

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _send(self, command: str) -> dict[str, Any]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the local Ray cluster exited (code {self.proc.wait(10)}); see {self.log_path}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"local Ray cluster: {answer['error']}")
        return answer


# ---------------------------------------------------------------------- the child process
def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--gpus-per-node", type=int, default=1)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--object-store-mb", type=int, default=80)
    parser.add_argument("--distinct-gpus", action="store_true")
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    store = args.object_store_mb << 20
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "object_store_memory": store, "include_dashboard": False})
    nodes: dict[str, Any] = {}
    added = 0

    def add() -> str:
        nonlocal added
        if args.distinct_gpus:  # the raylet reads it at start: this node's GPUs are the next physical ones
            first = added * args.gpus_per_node
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + i) for i in range(args.gpus_per_node))
        node = cluster.add_node(num_cpus=args.cpus_per_node, num_gpus=args.gpus_per_node, object_store_memory=store)
        added += 1
        nodes[node.node_id] = node
        return node.node_id

    def say(message: dict) -> None:
        print(json.dumps(message), flush=True)

    try:
        for _ in range(args.nodes):
            add()
        cluster.wait_for_nodes()
        say({"address": cluster.address, "nodes": list(nodes)})
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "quit":
                break
            try:
                if command == "kill":
                    cluster.remove_node(nodes.pop(arg), allow_graceful=False)
                    say({"killed": arg})
                elif command == "add":
                    node_id = add()
                    cluster.wait_for_nodes()
                    say({"added": node_id})
                else:
                    say({"error": f"unknown command {command!r}"})
            except Exception as exc:  # noqa: BLE001 - reported to the driver
                say({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _main()

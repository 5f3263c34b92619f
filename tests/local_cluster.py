"""A real multi-node Ray cluster on this machine: a head and worker nodes, each its own ``ray start --block``.

Every node runs in its own session with its own temp folder and free ports, so it never meets another Ray on
the machine (no shared ``/tmp/ray``, no default ports), and stopping it touches only its own processes: a
SIGTERM to ``ray start --block`` shuts its node down, and a SIGKILL to its process group loses the node the way
a machine that dies does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from clutune.platform.run.runtime import LOOPBACK, RAY_ENV

RAY = str(Path(sys.executable).parent / "ray")
# clutune's own Ray environment, but several nodes on one host: Ray refuses a second node unless clusters are
# enabled; every port stays local.
CLUSTER_ENV = {
    **RAY_ENV,
    LOOPBACK: "1",
    # A lost node is noticed in about two seconds instead of Ray's default of tens of seconds.
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class LocalCluster:
    root: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    free_port: Callable[[], int]
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_node(self, name: str, cpus: int, head: bool = False, cwd: Path | None = None) -> Node:
        """A node with ``cpus`` CPUs and its own custom resource ``name`` (so work can be pinned to it)."""
        temp = self.root / name
        temp.mkdir(parents=True, exist_ok=True)
        cmd = [RAY, "start", "--block", f"--num-cpus={cpus}", f"--resources={json.dumps({name: 100})}"]
        cmd += [f"--temp-dir={temp}", f"--dashboard-agent-listen-port={self.free_port()}", "--disable-usage-stats"]
        cmd += [f"--node-manager-port={self.free_port()}", f"--object-manager-port={self.free_port()}"]
        cmd += [f"--metrics-export-port={self.free_port()}", f"--runtime-env-agent-port={self.free_port()}"]
        if head:
            cmd += ["--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1"]
            cmd += [f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={self.free_port()}"]
        else:
            cmd += [f"--address={self.address}"]
        log = self.root / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, env=self.env, cwd=cwd or temp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = self.nodes[name] = Node(name, proc, temp, log)
        return node

    def wait_for_nodes(self, count: int, timeout: float = 90.0) -> None:
        """Until ``count`` nodes are alive in the cluster (asked through the dashboard's REST API)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in self.nodes.values():
                if not node.alive():
                    raise AssertionError(f"node {node.name} exited:\n{node.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.dashboard}/nodes?view=summary", timeout=2) as r:
                    summary = json.load(r)["data"]["summary"]
                if sum(n["raylet"]["state"] == "ALIVE" for n in summary) >= count:
                    return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{count} nodes did not come up in {timeout:.0f} s")

    def kill(self, name: str) -> None:
        """The node is lost: every process of it dies at once, with no chance to say goodbye."""
        node = self.nodes[name]
        with _suppress_gone():
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=30)

    def stop(self) -> None:
        """Workers first, then the head; whatever does not stop in time is killed, by process group."""
        for node in sorted(self.nodes.values(), key=lambda n: n.name == "head"):
            if node.alive():
                node.proc.send_signal(signal.SIGTERM)
                try:
                    node.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            with _suppress_gone():
                os.killpg(node.proc.pid, signal.SIGKILL)  # stragglers (workers, agents) of this node only

    def processes(self) -> list[str]:
        """Processes still running that belong to this cluster (its temp folder in their command line)."""
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if str(self.root) in line]


@contextmanager
def _suppress_gone() -> Iterator[None]:
    try:
        yield
    except ProcessLookupError:
        pass


@contextmanager
def local_cluster(free_port: Callable[[], int], env: dict[str, str] | None = None) -> Iterator[LocalCluster]:
    """An empty cluster description whose nodes are always stopped, and their folder removed, on the way out.
    Every port a node listens on comes from ``free_port`` (the conftest fixture)."""
    root = Path(tempfile.mkdtemp(prefix="crt", dir="/tmp"))  # Ray's socket paths must stay short
    cluster = LocalCluster(root, free_port(), free_port(), {**os.environ, **CLUSTER_ENV, **(env or {})}, free_port)
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.processes()
        subprocess.run(["rm", "-rf", str(root)], check=False)
        assert not left, f"Ray processes left behind: {left}"

"""Why: tests, benchmarks and `scripts/ray_gateway.sh` need a real Ray cluster on this machine that
starts bounded (CPUs, object store), listens only on 127.0.0.1 on free ports, and always goes
away again — including the worker processes the raylet spawned in their own process groups.

`LocalCluster` runs `ray start --head --block` as a child in its own session, deploys the model
workers from a separate short-lived driver process (`python -m classifiers.rayserve deploy`), so
the caller never becomes a Ray driver itself, and on `stop()` signals exactly the processes that
descend from that child (found through /proc), never anything found by name.

Ray resolves "127.0.0.1" to the host's outward address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
(a single-node switch, despite its name); every process started here gets it, so all of Ray's
traffic stays on the loopback interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from classifiers.base import ModelError

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                "ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# what `ray start` says when its own start-up failed for reasons a second try on fresh ports can avoid
RETRYABLE_START = ("timed out during startup", "is trying to use a port number")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each socket stays bound until all are chosen (one at a time,
    the kernel may hand the same port out twice, and Ray refuses a port given to two components)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first seen through /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads, and its waited-for children)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime


def process_role(pid: int) -> str:
    """What a Ray process does, from its title: `ServeReplica:<deployment>`, `ProxyActor`,
    `ServeController`, `raylet`, `gcs_server`, ... (`other` when unreadable)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    title = argv[0].decode(errors="replace") if argv else ""
    if title.startswith("ray::"):
        name = title[5:].split(" ", 1)[0]
        if name.startswith("ServeReplica:"):
            return ":".join(name.split(":")[:2])
        return name.split(".", 1)[0] or "ray worker"
    return Path(title.split(" ", 1)[0]).name or "other"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class LocalCluster:
    """A one-node Ray cluster plus the Serve proxy on 127.0.0.1, for tests and trials."""

    def __init__(self, *, num_cpus: int = 2, object_store_mb: int = 100, serve_port: int | None = None) -> None:
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self._fixed_serve_port = serve_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._pids: set[int] = set()
        self._fresh()

    def _fresh(self) -> None:
        """New ports (chosen together, so no two are the same) and a new temp dir."""
        self._ports = free_ports(10)
        self.gcs_port = self._ports[0]
        self.serve_port = self._fixed_serve_port or self._ports[1]
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cgray-", dir="/tmp"))  # short: Ray's socket paths
        self.log_path = self.temp_dir / "head.log"

    @property
    def address(self) -> str:
        """The GCS address drivers (and `deploy`) connect to."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def serve_url(self) -> str:
        """The Serve proxy, which the gateway's ray backend calls (CONSENTGATE_RAY_ADDRESS)."""
        return f"http://127.0.0.1:{self.serve_port}"

    @staticmethod
    def env() -> dict[str, str]:
        return {**os.environ, **LOOPBACK_ENV}

    def start(self, timeout_s: float = 180.0) -> LocalCluster:
        """Start the head; once more on fresh ports when Ray gave up on its own start-up (`ray start`
        waits a fixed 30 s for the raylet to register: on an overloaded machine it can miss it)."""
        try:
            return self._start_once(timeout_s)
        except ModelError as exc:
            if not any(sign in str(exc) for sign in RETRYABLE_START):
                raise
        self._fresh()
        return self._start_once(timeout_s)

    def _start_once(self, timeout_s: float) -> LocalCluster:
        ray = Path(sys.executable).parent / "ray"
        argv = [
            str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(self.gcs_port), "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--object-store-memory", str(self.object_store_mb * 1024 * 1024),
            "--include-dashboard", "false", "--disable-usage-stats",
            "--temp-dir", str(self.temp_dir),
        ]
        flags = ("--ray-client-server-port", "--node-manager-port", "--object-manager-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                 "--metrics-export-port", "--dashboard-port")
        for flag, port in zip(flags, self._ports[2:], strict=True):
            argv += [flag, str(port)]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(),  # noqa: S603
                                          start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in self.log_path.read_text(errors="replace"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise ModelError(f"the local Ray head did not start:\n{tail}")
            time.sleep(0.25)
        self._remember()
        return self

    def _remember(self) -> None:
        if self._proc is not None:
            self._pids.update(descendants(self._proc.pid))
        self._pids.update(self._of_this_cluster())

    def _of_this_cluster(self) -> list[int]:
        """Processes whose command line names this cluster's temp dir (unique to it): also finds a
        worker the raylet spawned an instant before it died, which init then adopted."""
        marker = str(self.temp_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def deploy(self, config: Path | Mapping[str, Any], timeout_s: float = 600.0) -> None:
        """Deploy the model workers described by a workers file (or its parsed mapping)."""
        if isinstance(config, Mapping):
            path = self.temp_dir / "workers.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
        else:
            path = Path(config)
        argv = [sys.executable, "-m", "classifiers.rayserve", "deploy", "--address", self.address,
                "--config", str(path), "--http-port", str(self.serve_port), "--strict-resources",
                "--timeout", str(max(30.0, timeout_s - 30.0))]
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True,  # noqa: S603
                              timeout=timeout_s, check=False)
        self._remember()
        if done.returncode != 0:
            raise ModelError(f"deploy failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the cluster's live processes (benchmarks add it to their own)."""
        return sum(self.cpu_by_role().values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds of the cluster's live processes by role: a Serve replica's deployment
        (`ServeReplica:face`), the proxy, the controller, `raylet`, `gcs_server`, ... — so a benchmark
        can say where the CPU of a request went (the models, or the transport around them)."""
        self._remember()
        out: dict[str, float] = {}
        for pid in self._pids:
            cpu = process_cpu_seconds(pid)
            if cpu is not None:
                role = process_role(pid)
                out[role] = out.get(role, 0.0) + cpu
        return out

    def replica_pids(self, family: str) -> list[int]:
        """PIDs of the family's live Serve replicas (their process title names the deployment)."""
        self._remember()
        out = []
        for pid in sorted(self._pids):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"ServeReplica:{family}:{family}" in title and _alive(pid):
                out.append(pid)
        return out

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the head and every process it started; idempotent."""
        if self._proc is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        for _round in range(3):  # again for anything spawned while the first round went down
            self._remember()
            victims = [p for p in [self._proc.pid, *sorted(self._pids)] if _alive(p)]
            if not victims:
                break
            for pid in victims:  # all at once: a draining head would wait 30 s for its workers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(_alive(p) for p in victims):
                time.sleep(0.1)
            for pid in victims:
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)
        self._proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start() if self._proc is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""What building one index costs PostgreSQL: wall time, CPU seconds of the backend and of
its parallel workers, peak memory, and the server's notices (pgvector says "hnsw graph no
longer fits into maintenance_work_mem after N tuples" when the graph spills).

CPU seconds are read from /proc/<pid>/stat (utime + stime, Linux; ``proc(5)``) of the
backend that runs CREATE INDEX (``pg_backend_pid()``) and of the parallel workers that
pg_stat_activity lists with it as ``leader_pid``. The backend's are exact (read before and
after); a worker's are its last sample before it exits, so up to one sampling interval
(0.05 s) of each worker's may be missed. On a shared machine CPU seconds are the stable
measure; wall time depends on what else runs. Memory is sampled from /proc/<pid>/status:
private (RssAnon, summed over the processes) and shared (RssShmem: shared_buffers and the
parallel build's shared graph, counted once: the largest of the processes').
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field

import psycopg

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
INTERVAL_SECONDS = 0.05


@dataclass
class BuildCost:
    statement: str
    maintenance_work_mem: str
    max_parallel_maintenance_workers: int
    wall_seconds: float = 0.0
    backend_cpu_seconds: float = 0.0
    workers_cpu_seconds: float = 0.0
    workers: int = 0  # parallel workers seen
    peak_private_bytes: int = 0
    peak_shared_bytes: int = 0
    notices: list[str] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float:
        return self.backend_cpu_seconds + self.workers_cpu_seconds

    @property
    def graph_fit(self) -> bool:
        """False when pgvector said the graph no longer fit into maintenance_work_mem."""
        return not any("no longer fits" in notice for notice in self.notices)

    def as_dict(self) -> dict:
        return {**asdict(self), "cpu_seconds": self.cpu_seconds, "graph_fit": self.graph_fit}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # fields 14 and 15 of proc(5)


def memory_bytes(pid: int) -> tuple[int, int]:
    """(RssAnon, RssShmem) of a process in bytes; (0, 0) when it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("RssAnon", "RssShmem"):
                    values[name] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    return values.get("RssAnon", 0), values.get("RssShmem", 0)


class Sampler(threading.Thread):
    """Samples the backend ``pid`` and its parallel workers until ``stop`` is set."""

    def __init__(self, conninfo: dict, pid: int, cost: BuildCost):
        super().__init__(daemon=True)
        self.conninfo, self.pid, self.cost = conninfo, pid, cost
        self.stop = threading.Event()
        self.workers: dict[int, float] = {}  # pid -> last CPU seconds seen

    def run(self) -> None:
        with psycopg.connect(autocommit=True, **self.conninfo) as watcher:
            last_lookup = 0.0
            while not self.stop.is_set():
                if time.monotonic() - last_lookup > 0.2:  # workers start once, after the scan begins
                    for (pid,) in watcher.execute("SELECT pid FROM pg_stat_activity WHERE leader_pid = %s", [self.pid]):
                        self.workers.setdefault(pid, 0.0)
                    last_lookup = time.monotonic()
                private, shared = memory_bytes(self.pid)
                for pid in self.workers:
                    seconds = cpu_seconds(pid)
                    if seconds is not None:
                        self.workers[pid] = seconds
                        worker_private, worker_shared = memory_bytes(pid)
                        private, shared = private + worker_private, max(shared, worker_shared)
                self.cost.peak_private_bytes = max(self.cost.peak_private_bytes, private)
                self.cost.peak_shared_bytes = max(self.cost.peak_shared_bytes, shared)
                self.stop.wait(INTERVAL_SECONDS)


def build(conninfo: dict, statement: str, *, maintenance_work_mem: str) -> BuildCost:
    """Run ``statement`` (a CREATE INDEX) on a new connection with ``maintenance_work_mem``
    and measure it. ``conninfo``: psycopg.connect keyword arguments (dbname included).
    The server must be on this machine (its /proc is read)."""
    with psycopg.connect(autocommit=True, **conninfo) as connection:
        connection.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        workers = int(connection.execute("SHOW max_parallel_maintenance_workers").fetchone()[0])
        cost = BuildCost(statement, maintenance_work_mem, workers)
        connection.add_notice_handler(lambda diagnostic: cost.notices.append(diagnostic.message_primary))
        pid = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        sampler = Sampler(conninfo, pid, cost)
        backend_before = cpu_seconds(pid)
        sampler.start()
        started = time.perf_counter()
        try:
            connection.execute(statement)
        finally:
            cost.wall_seconds = time.perf_counter() - started
            sampler.stop.set()
            sampler.join()
        cost.backend_cpu_seconds = cpu_seconds(pid) - backend_before
        cost.workers = len(sampler.workers)
        cost.workers_cpu_seconds = sum(sampler.workers.values())
    return cost

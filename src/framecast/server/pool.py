"""Starts the worker processes and watches them: a worker that dies has its job put back in the
queue (or failed, after max_attempts) and is replaced. Its own thread and its own Store, so the
watching never waits on the API.

Workers talk back over a pipe only, and are stopped by signals: nothing is shared that a worker
killed at the wrong moment could leave locked.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from .settings import ServerSettings
from .store import Store
from .worker import WorkerConfig, worker_main

log = logging.getLogger("framecast.pool")
WATCH_S = 0.5


@dataclass
class _Worker:
    config: WorkerConfig
    process: Any  # multiprocessing Process
    conn: Any  # read end of the worker's pipe
    ready: bool = False
    gave_up: bool = False  # died loading the model: not replaced

    def read(self) -> str | None:
        """The worker's message, if one has come ("ready" or why loading failed)."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None


@dataclass
class WorkerPool:
    settings: ServerSettings
    workers: list[_Worker] = field(default_factory=list)
    error: str | None = None  # why no worker can run (the model would not load)

    def __post_init__(self):
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no forked torch threads or sockets
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def start(self) -> None:
        self._store = Store(self.settings.db_path, self.settings.max_attempts)
        self.workers = [self._spawn() for _ in range(self.settings.workers)]
        # the watcher spawns replacements, and a worker's death signal follows the thread that
        # spawned it: the watcher lives until stop(), which ends the workers anyway
        self._thread = threading.Thread(target=self._watch, name="framecast-pool", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Worker:
        s = self.settings
        threads = None
        if "OMP_NUM_THREADS" not in os.environ:  # share the cores between workers instead of fighting
            threads = max(1, (os.cpu_count() or 1) // s.workers)
        cfg = WorkerConfig(worker_id=f"w{os.getpid()}-{secrets.token_hex(4)}", db_path=s.db_path,
                           videos_dir=s.videos_dir, inputs_dir=s.inputs_dir, model_dir=s.model_dir,
                           parent_pid=os.getpid(),
                           device=s.device, threads=threads, max_attempts=s.max_attempts)
        read, write = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=worker_main, args=(cfg, write), name=f"framecast-{cfg.worker_id}",
                                    daemon=True)
        process.start()
        write.close()  # the child holds its own copy: EOF here once it is gone
        return _Worker(cfg, process, read)

    def status(self) -> dict:
        return {"workers": len(self.workers), "ready": sum(w.ready and w.process.is_alive() for w in self.workers),
                "error": self.error, "pids": [w.process.pid for w in self.workers]}

    @property
    def broken(self) -> str | None:
        """Why no job can run, once every worker has failed to load the model."""
        return self.error if self.workers and all(w.gave_up for w in self.workers) else None

    def _watch(self) -> None:
        while not self._halt.wait(WATCH_S):
            self.check()

    def check(self) -> None:
        """Note workers that became ready; replace dead ones, after putting their jobs back."""
        for i, w in enumerate(self.workers):
            if not w.ready and not w.gave_up:
                message = w.read()
                if message == "ready":
                    w.ready = True
                elif message:
                    self.error = message
            if w.gave_up or w.process.is_alive() or self._halt.is_set():
                continue
            n = self._store.requeue([w.config.worker_id])
            if not w.ready:  # died loading the model: another try would too
                w.gave_up = True
                self.error = self.error or f"worker {w.process.pid} exited with code {w.process.exitcode} while loading"
                log.error("%s; no worker is running (queued jobs wait for a restart)", self.error)
                continue
            log.warning("worker %s exited with code %s; %d job(s) put back; starting another",
                        w.process.pid, w.process.exitcode, n)
            w.conn.close()
            self.workers[i] = self._spawn()

    def stop(self, timeout: float = 5.0) -> None:
        """An orderly stop: workers end now, and their jobs go back to the queue uncharged."""
        self._halt.set()
        if self._thread:
            self._thread.join()
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()  # a job in progress would take too long to wait for
        for w in self.workers:
            w.process.join(timeout)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        if self._store:
            self._store.requeue([w.config.worker_id for w in self.workers], charge=False)
            self._store.close()

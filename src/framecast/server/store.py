"""Jobs in SQLite: the one record of what was asked and how far it got.

Every process (the API, each worker, the pool's watcher) opens its own Store on the same file;
WAL lets status reads go on while a worker writes. A job is claimed by a worker id; every write
a worker makes names that id, so a worker whose job was taken back (its server restarted, or the
job was deleted) finds its writes refused and drops the work instead of overwriting anything.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: queue order and list order
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,                    -- digest of the API key, '' without keys
    status TEXT NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
    progress INTEGER NOT NULL DEFAULT 0,
    prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    seconds TEXT NOT NULL,                  -- as the API shows it: "4", "2.5"
    size TEXT NOT NULL,                     -- as made: "64x64"
    options TEXT NOT NULL,                  -- JSON of the SampleOptions fields
    remixed_from TEXT,
    given TEXT,                             -- JSON: Given.from_files' arguments, files in the job's inputs folder
    provenance TEXT,                        -- JSON: the finished video's credentials and watermark, checked once
    error_code TEXT,
    error_message TEXT,
    created_at INTEGER NOT NULL,
    started_at REAL,
    completed_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,    -- claims so far; an interrupted claim counts
    worker TEXT                             -- the worker holding an in_progress job
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, seq);
"""
ADDED = {"given": "TEXT", "provenance": "TEXT"}  # columns schema 1 lacked
JSON_COLUMNS = ("options", "given", "provenance")


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    owner: str
    status: str
    progress: int
    prompt: str
    model: str
    seconds: str
    size: str
    options: dict[str, Any]
    remixed_from: str | None
    given: dict[str, Any] | None
    provenance: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    created_at: int
    started_at: float | None
    completed_at: int | None
    attempts: int
    worker: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        d = dict(row)
        for k in JSON_COLUMNS:
            d[k] = None if d[k] is None else json.loads(d[k])
        return cls(**d)


class Store:
    def __init__(self, path: str | Path, max_attempts: int = 3):
        self.path, self.max_attempts = Path(path), max_attempts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit: each statement is its own transaction; busy waits cover a writer in another process
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()  # one connection, shared by the API's threads
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted job survives a power cut too
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} was written by a newer framecast (schema {version})")
            self._db.executescript(SCHEMA)
            have = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
            for name, kind in ADDED.items():  # a data folder of an older framecast: its jobs had none
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _change(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # --- the API's side --------------------------------------------------------------------------
    def add(self, *, id: str, owner: str, prompt: str, model: str, seconds: str, size: str,
            options: dict[str, Any], remixed_from: str | None = None, given: dict[str, Any] | None = None) -> Job:
        rows = self._run(
            "INSERT INTO jobs (id, owner, status, prompt, model, seconds, size, options, remixed_from, given,"
            " created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (id, owner, prompt, model, seconds, size, json.dumps(options), remixed_from,
             None if given is None else json.dumps(given), int(time.time())))
        return Job.from_row(rows[0])

    def get(self, id: str, owner: str | None = None) -> Job | None:
        """A job by id; with an owner, only that owner's (another's is as good as missing)."""
        sql, args = "SELECT * FROM jobs WHERE id = ?", (id,)
        if owner is not None:
            sql, args = sql + " AND owner = ?", (id, owner)
        rows = self._run(sql, args)
        return Job.from_row(rows[0]) if rows else None

    def list(self, owner: str, after: Job | None = None, limit: int = 20,
             order: str = "desc") -> tuple[list[Job], bool]:
        """A page of an owner's jobs, newest first for desc; and whether more follow."""
        op, direction = ("<", "DESC") if order == "desc" else (">", "ASC")
        sql, args = "SELECT * FROM jobs WHERE owner = ?", [owner]
        if after is not None:
            sql += f" AND seq {op} ?"
            args.append(after.seq)
        rows = self._run(f"{sql} ORDER BY seq {direction} LIMIT ?", (*args, limit + 1))
        return [Job.from_row(r) for r in rows[:limit]], len(rows) > limit

    def delete(self, id: str, owner: str | None = None) -> Job | None:
        """Remove a job in any state (a worker on it finds out at its next write); returns it."""
        sql, args = "DELETE FROM jobs WHERE id = ?", (id,)
        if owner is not None:
            sql, args = sql + " AND owner = ?", (id, owner)
        rows = self._run(sql + " RETURNING *", args)
        return Job.from_row(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._run("SELECT status, count(*) AS n FROM jobs GROUP BY status")}

    # --- the workers' side -----------------------------------------------------------------------
    def claim(self, worker: str) -> Job | None:
        """Take the oldest queued job (one statement: two workers never get the same job)."""
        rows = self._run(
            "UPDATE jobs SET status = 'in_progress', worker = ?, progress = 0, started_at = ?, attempts = attempts + 1"
            " WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1) RETURNING *",
            (worker, time.time()))
        return Job.from_row(rows[0]) if rows else None

    def set_progress(self, id: str, worker: str, progress: int) -> bool:
        """False: the job is no longer this worker's (deleted, or taken back); drop it."""
        return self._change("UPDATE jobs SET progress = ? WHERE id = ? AND worker = ? AND status = 'in_progress'",
                            (progress, id, worker)) == 1

    def complete(self, id: str, worker: str, provenance: dict[str, Any] | None = None) -> bool:
        return self._change(
            "UPDATE jobs SET status = 'completed', progress = 100, completed_at = ?, worker = NULL, provenance = ?"
            " WHERE id = ? AND worker = ? AND status = 'in_progress'",
            (int(time.time()), None if provenance is None else json.dumps(provenance), id, worker)) == 1

    def fail(self, id: str, worker: str, code: str, message: str) -> bool:
        return self._change(
            "UPDATE jobs SET status = 'failed', error_code = ?, error_message = ?, completed_at = ?, worker = NULL"
            " WHERE id = ? AND worker = ? AND status = 'in_progress'",
            (code, message, int(time.time()), id, worker)) == 1

    def requeue(self, workers: list[str] | None = None, charge: bool = True) -> int:
        """Jobs left in_progress by stopped workers (all of them: at start-up, when none can be
        running) go back to the queue, or fail once they have been interrupted max_attempts times.
        charge=False: an orderly stop, which does not count against the job's attempts."""
        if workers == []:
            return 0
        where, args = "status = 'in_progress'", []
        if workers is not None:
            where += f" AND worker IN ({', '.join('?' * len(workers))})"
            args = list(workers)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not charge:
                    self._db.execute(f"UPDATE jobs SET attempts = max(attempts - 1, 0) WHERE {where}", args)
                failed = self._db.execute(
                    f"UPDATE jobs SET status = 'failed', worker = NULL, completed_at = ?, error_code = 'interrupted',"
                    f" error_message = 'generation was interrupted ' || attempts || ' times (its server or worker"
                    f" process stopped); giving up' WHERE {where} AND attempts >= ?",
                    (int(time.time()), *args, self.max_attempts)).rowcount
                queued = self._db.execute(
                    f"UPDATE jobs SET status = 'queued', worker = NULL, progress = 0 WHERE {where}", args).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return failed + queued

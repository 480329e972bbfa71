"""Helpers for the server tests: a tiny model folder and a real `framecast serve` process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from torch import nn

from framecast.pipeline import ModelMeta
from tiny import tiny_model

FRAMECAST = Path(sys.executable).with_name("framecast")
META = ModelMeta(fps=8.0, width=32, height=32, steps=2, guidance=4.0)


def make_model_dir(folder: Path) -> Path:
    """The tiny preset with small random weights: a job takes well under a second."""
    tiny_model(META, text=nn.Identity()).save(folder)  # saving needs no text encoder
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(*args) -> list[str]:
    cmd = [str(FRAMECAST)] if FRAMECAST.exists() else [sys.executable, "-m", "framecast"]
    return cmd + [str(a) for a in args]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, dict | bytes, dict]:
    """(status, JSON or bytes, headers) for any status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, data, head = r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        status, data, head = e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}
    if head.get("content-type", "").startswith("application/json"):
        data = json.loads(data)
    return status, data, head


class Server:
    """`framecast serve` in its own process group; kill() is a SIGKILL to the server alone."""

    def __init__(self, model_dir: Path, data_dir: Path, *args, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"serve-{self.port}.log", "w")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            command("serve", "--model", model_dir, "--data", data_dir, "--port", self.port, *args),
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()

    def health(self) -> dict | None:
        try:
            status, body, _ = http("GET", self.url + "/healthz", timeout=5)
        except OSError:
            return None
        return body if status == 200 else None

    def wait_ready(self, timeout: float = 180) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"the server exited:\n{self.output()}"
            health = self.health()
            if health and health["pool"]["ready"] >= 1:
                return health
            time.sleep(0.2)
        raise TimeoutError(f"the server was not ready in {timeout} s:\n{self.output()}")

    def client(self, key: str = "unused", **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def kill(self) -> None:
        """SIGKILL the server process alone, as a crash would; its workers must notice by themselves."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def wait_for(predicate, timeout: float = 60, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")

"""`framecast serve` under load, on loopback only: status-poll latency while videos render, and
videos per minute with 1 and 2 workers.

    python benchmarks/server_poll.py --model runs/tiny/model --pollers 50 --poll-seconds 10 --videos 6

Without --model a tiny random-weight model is made in a temporary folder; give it --steps 300
--size 64x64 so that each video takes seconds and the pollers run while videos render. Every loop is bounded in
count and time, and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import Server, make_model_dir


def _post(url: str, fields: dict) -> dict:
    body = json.dumps(fields).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


async def _poller(port: int, path: str, until: float, interval: float, latencies: list[float]) -> None:
    """One keep-alive connection polling every `interval` seconds, as a client's poll loop does (0:
    back to back). A minimal HTTP/1.1 client: the measurement should be the server's time, not a
    client library's."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    await asyncio.sleep(random.uniform(0, interval))  # pollers that started at different times
    try:
        while time.monotonic() < until:
            if interval:
                await asyncio.sleep(interval)
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


def poll_latency(server: Server, video_id: str, pollers: int, seconds: float, interval: float) -> dict:
    latencies: list[float] = []

    async def run():
        until = time.monotonic() + seconds
        await asyncio.gather(*(_poller(server.port, f"/v1/videos/{video_id}", until, interval, latencies)
                               for _ in range(pollers)))

    asyncio.run(run())
    ms = sorted(x * 1000 for x in latencies)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]
    return {"requests": len(ms), "per_s": round(len(ms) / seconds), "p50_ms": round(pick(0.5), 2),
            "p99_ms": round(pick(0.99), 2), "max_ms": round(ms[-1], 2), "mean_ms": round(statistics.mean(ms), 2)}


def measure(model: Path, workers: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(model, Path(tmp) / "data", "--workers", workers)
        try:
            server.wait_ready()
            if workers > 1:  # every worker loaded, so the timing below is generation alone
                end = time.monotonic() + 300
                while server.health()["pool"]["ready"] < workers and time.monotonic() < end:
                    time.sleep(0.2)
            jobs = {"prompt": "a red ball falls and bounces", "seconds": args.seconds}
            jobs.update({k: v for k, v in (("size", args.size), ("steps", args.steps)) if v is not None})
            url = server.url + "/v1/videos"
            t0 = time.perf_counter()
            ids = [_post(url, jobs)["id"] for _ in range(args.videos)]
            # the latency phase runs while the first videos render
            time.sleep(0.5)
            result = {"workers": workers, "status_at_poll_start": _get(f"{url}/{ids[0]}")["status"]}
            result["poll"] = poll_latency(server, ids[-1], args.pollers, args.poll_seconds, args.interval)
            result["poll_back_to_back"] = poll_latency(server, ids[-1], args.pollers, args.poll_seconds / 2, 0)
            end = time.monotonic() + args.timeout
            while time.monotonic() < end:
                states = [_get(f"{url}/{i}")["status"] for i in ids]
                if all(s in ("completed", "failed") for s in states):
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - t0
            result["videos"] = args.videos
            result["completed"] = sum(s == "completed" for s in states)
            result["videos_per_minute"] = round(60 * result["completed"] / elapsed, 1)
            return result
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: a tiny random model)")
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--poll-seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.5,
                    help="seconds between a poller's requests (default 0.5: what the server tells the openai client)")
    ap.add_argument("--videos", type=int, default=6, help="videos queued for the throughput count")
    ap.add_argument("--seconds", default="4")
    ap.add_argument("--size", default=None, help="WxH (default: the model's)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps a video (default: the model's)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_model_dir(Path(tmp) / "tiny")
        for n in args.workers:
            print(json.dumps(measure(model, n, args)), flush=True)


if __name__ == "__main__":
    main()

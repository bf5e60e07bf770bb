"""Event streams under many subscribers: N clients follow one job's ``GET /v1/solves/{id}/events`` at once.

    python bench/bench_events.py                 # 1000 subscribers
    python bench/bench_events.py --subscribers 100

A planted solve (n=3000, d=40, k=2, 16 trials, no early stop) runs on ``python -m cnnrelax.server`` (one worker,
a temporary data dir, a free loopback port) while N asyncio subscribers in this process read its whole stream.
Reported: whether every subscriber got the same events, the server's resident memory before and at its peak
(and per subscriber), the server's CPU seconds while they listened, and ``/healthz`` latency measured from the
same process (so it includes this process's own event loop, busy parsing N streams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

JOB = {"planted": {"n": 3000, "d": 40, "k": 2, "seed": 5}, "trials": 16, "stop_on_certificate": False}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def subscribe(client: httpx.AsyncClient, path: str) -> list[int]:
    ids: list[int] = []
    async with client.stream("GET", path) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
    return ids


async def follow(url: str, path: str, count: int, pid: int) -> tuple[list[list[int]], float, list[float]]:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(subscribe(client, path)) for _ in range(count)]
        peak, latencies = rss_mib(pid), []
        while not all(task.done() for task in tasks):
            started = time.monotonic()
            await client.get("/healthz")
            latencies.append(time.monotonic() - started)
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.2)
        return [task.result() for task in tasks], peak, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    count = parser.parse_args().subscribers
    port, data_dir = free_port(), tempfile.mkdtemp(prefix="bench-events-")
    env = {**os.environ, "CNNRELAX_WORKERS": "1", "CNNRELAX_LOG_LEVEL": "warning"}
    with open(os.path.join(data_dir, "server.log"), "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port",
                                   str(port), "--data-dir", data_dir], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready")
            time.sleep(0.1)
        job_id = httpx.post(f"{url}/v1/solves", json=JOB).json()["id"]
        before, cpu_before, started = rss_mib(server.pid), cpu_seconds(server.pid), time.monotonic()
        streams, peak, latencies = asyncio.run(follow(url, f"/v1/solves/{job_id}/events", count, server.pid))
        latencies.sort()
        print(json.dumps({
            "subscribers": count, "events_per_stream": len(streams[0]),
            "all_equal": all(stream == streams[0] for stream in streams),
            "rss_mib_before": round(before, 1), "rss_mib_peak": round(peak, 1),
            "rss_kib_per_subscriber": round((peak - before) * 1024 / count, 1),
            "server_cpu_s": round(cpu_seconds(server.pid) - cpu_before, 2),
            "healthz_ms_median": round(latencies[len(latencies) // 2] * 1000, 1),
            "healthz_ms_max": round(latencies[-1] * 1000, 1), "wall_s": round(time.monotonic() - started, 1),
        }))
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()

"""What the edge protocol costs: the server's CPU time per keep-alive ``GET /healthz``, uvicorn's plain httptools
protocol against :mod:`cnnrelax.edge`'s, alternating (CPU time, not wall time: it is less sensitive to other load).

    python bench/bench_edge_overhead.py            # 4 rounds of 3000 requests each
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import psutil

SERVE = """
import sys, uvicorn
from cnnrelax.settings import Settings
from cnnrelax.api import create_app
from cnnrelax.edge import EdgeLimits, edge_protocol
settings = Settings(data_dir=sys.argv[2], workers=1)
http = edge_protocol(EdgeLimits.from_settings(settings)) if sys.argv[1] == "edge" else "httptools"
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning", access_log=False,
            http=http)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_per_request(kind: str, requests: int) -> float:
    """Microseconds of server CPU (user + system) per request."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen([sys.executable, "-c", SERVE, kind, data_dir, str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(600):
                    try:
                        if client.get("/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                for _ in range(200):
                    client.get("/healthz")
                server = psutil.Process(process.pid)
                before = sum(server.cpu_times()[:2])
                for _ in range(requests):
                    client.get("/healthz")
                return (sum(server.cpu_times()[:2]) - before) / requests * 1e6
        finally:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    costs: dict[str, list[float]] = {"httptools": [], "edge": []}
    for _ in range(args.rounds):
        for kind in costs:
            costs[kind].append(cpu_per_request(kind, args.requests))
    for kind, values in costs.items():
        print(f"{kind:9s} server CPU per request (us): {[round(v) for v in values]}, "
              f"median {statistics.median(values):.0f}")
    ratios = [edge / plain for edge, plain in zip(costs["edge"], costs["httptools"], strict=True)]
    print(f"edge / httptools, round by round: {[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

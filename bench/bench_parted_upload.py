"""Uploads in parts against one body (issue 20, deliverable 3): wall time and the API process's peak RSS rise.

Starts ``python -m cnnrelax.server`` on a fresh data dir, then, for one dataset of ``--rows`` x ``--d`` float64,
alternately (``--repeats`` rounds): a one-body ``.npz`` upload (``POST /v1/datasets``; only while it fits
``CNNRELAX_MAX_BODY_BYTES``) and an upload in parts (``Client.upload_large`` from a memory-mapped ``X.npy``,
``--part-mib`` a part). Each upload is of new content (``y`` shifted), so nothing is deduplicated. The API's
RSS is sampled every 5 ms in a thread (psutil); the rise is over its value before the upload. A larger
dataset (``--large-rows``), past the body limit, goes in parts only.

    nice python bench/bench_parted_upload.py                 # about 20 s on two idle cores
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import psutil

from cnnrelax_client import Client

MiB = 1024 * 1024


class PeakRss:
    """Samples a process's RSS every 5 ms, and its anonymous part (RSS less file-backed pages, psutil's ``shared``):
    the peaks over the values at the start."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        info = self.process.memory_info()
        self.start = self.peak = info.rss
        self.anon_start = self.anon_peak = info.rss - info.shared
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = self.process.memory_info()
            self.peak = max(self.peak, info.rss)
            self.anon_peak = max(self.anon_peak, info.rss - info.shared)
            time.sleep(0.005)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def measure(pid: int, action: Callable[[], str]) -> tuple[float, str]:
    """Seconds of ``action`` and the API's peak RSS rise, total / anonymous, in MiB."""
    with PeakRss(pid) as memory:
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
    return seconds, f"{(memory.peak - memory.start) / MiB:.1f} / {(memory.anon_peak - memory.anon_start) / MiB:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=31)
    parser.add_argument("--large-rows", type=int, default=600_000)  # n d under CNNRELAX_MAX_MATRIX_ENTRIES
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    port = 18000 + os.getpid() % 1000
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port", str(port),
                               "--data-dir", str(work / "data")], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "CNNRELAX_WORKERS": "1", "CNNRELAX_LOG_LEVEL": "warning"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((args.rows, args.d))
        np.save(work / "X.npy", X)
        mapped = np.load(work / "X.npy", mmap_mode="r")
        part_rows = args.part_mib * MiB // ((args.d + 1) * 8)
        size = X.nbytes + args.rows * 8
        print(f"dataset {args.rows} x {args.d} float64 ({size / MiB:.1f} MiB of X and y); parts of {part_rows} rows "
              f"({args.part_mib} MiB)")
        print("| round | upload | seconds | MiB/s | API peak RSS rise, total / anonymous (MiB) |")
        print("|---|---|---|---|---|")
        with Client(url, timeout=300) as client:
            for round_ in range(args.repeats):
                y_body = rng.standard_normal(args.rows)
                y_parts = y_body + 1.0

                def one_body(y: np.ndarray = y_body) -> str:
                    buffer = io.BytesIO()
                    np.savez(buffer, X=X, y=y)
                    answer = httpx.post(f"{url}/v1/datasets", content=buffer.getvalue(),
                                        headers={"content-type": "application/x-npz"}, timeout=300)
                    answer.raise_for_status()
                    return str(answer.json()["id"])

                def in_parts(y: np.ndarray = y_parts) -> str:
                    return client.upload_large(mapped, y, part_rows=part_rows).id

                assert server.pid is not None
                for name, action in (("one body (.npz)", one_body), ("in parts", in_parts)):
                    seconds, rise = measure(server.pid, action)
                    print(f"| {round_ + 1} | {name} | {seconds:.2f} | {size / MiB / seconds:.0f} | {rise} |")
            large = np.lib.format.open_memmap(work / "large.npy", mode="w+", dtype=np.float64,
                                              shape=(args.large_rows, args.d))
            for start in range(0, args.large_rows, 100_000):
                large[start:start + 100_000] = rng.standard_normal((min(100_000, args.large_rows - start), args.d))
            large.flush()
            y_large = rng.standard_normal(args.large_rows)
            large_size = large.nbytes + y_large.nbytes
            seconds, rise = measure(server.pid, lambda: client.upload_large(large, y_large, part_rows=part_rows).id)
            print(f"| - | in parts, {large_size / MiB:.0f} MiB (past the 64 MiB body limit) | {seconds:.2f} | "
                  f"{large_size / MiB / seconds:.0f} | {rise} |")
    finally:
        server.terminate()
        server.wait(30)
        log.close()


if __name__ == "__main__":
    main()

"""Time and peak memory of the rotated-digits experiment (paper Table 1) at real image size.

The default run is the 28x28 stand-in made here (:func:`cnnrelax.experiments.rotated_digits.upsampled_digits`:
scikit-learn's digits upsampled into 28x28 images), N = 5000 images, every default of the experiment
(5 seeds, the default filter shapes 4x4, 3x3 and 5x5). It runs in this process, cell after cell, as one
experiment job runs in one worker, and prints each cell as it ends with its stages (data, relaxation,
ridge), then the wall time, the peak resident memory, and the result's verdict. Targets: under 10 minutes on
2 cores, under 4 GB.

Run: ``python bench/bench_rotated_digits.py`` (``--images mnist.npz`` for your own images, ``--count``,
``--seeds``, ``--set key=value`` for any other spec field, ``--out DIR`` for the figure and JSON result,
``--workers 2`` to run cells in two processes as the experiments' ``map_cells`` hook allows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator

from cnnrelax.experiments import parse_experiment_spec, render_figure, run_experiment
from cnnrelax.experiments.rotated_digits import upsampled_digits
from cnnrelax.experiments.specs import RotatedDigitsSpec


def peak_rss_mb() -> float:
    """Peak resident set size of this process, or of the largest worker process, so far, in MB (Linux: KB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children: the wall time on an idle machine
    whose cores do nothing else (the cells run one BLAS thread each)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pool_map(pool: ProcessPoolExecutor) -> Callable[[Callable[[dict], dict], list], Iterator[dict]]:
    """``map_cells`` over a process pool: submit every cell, yield results as they finish."""

    def map_cells(run: Callable[[dict], dict], cells: list) -> Iterator[dict]:
        futures: list[Future] = [pool.submit(run, cell) for cell in cells]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    return map_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000, help="images of the stand-in (default 5000)")
    parser.add_argument("--images", default=None, help=".npz with 'images' (N x H x W) and optional 'angles'")
    parser.add_argument("--seeds", type=int, default=None, help="replicate seeds (default: the experiment's, 5)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="any spec field, key=JSON")
    parser.add_argument("--out", default=None, help="directory for the figure and the JSON result")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes running cells (default 1: as one experiment job runs in one worker)")
    args = parser.parse_args()
    start = time.perf_counter()
    request: dict[str, Any] = {"kind": "rotated_digits"}
    if args.images:
        request["images_path"] = args.images
    else:
        request["images"] = upsampled_digits(args.count, seed=0)
    if args.seeds is not None:
        request["seeds"] = args.seeds
    for item in args.extra:
        key, _, value = item.partition("=")
        try:
            request[key] = json.loads(value)
        except json.JSONDecodeError:
            request[key] = value
    spec = parse_experiment_spec(request)
    assert isinstance(spec, RotatedDigitsSpec)
    made = time.perf_counter() - start
    using = "" if spec.max_images is None else f" (using {spec.max_images})"
    print(f"images {spec.image_shape[0]}x{spec.image_shape[1]} from {spec.source}, "
          f"{spec.image_count} of them{using} (made and validated in "
          f"{made:.1f} s); seeds {spec.seeds}, filter shapes {spec.shapes}, filters {spec.filters}, "
          f"fit_samples {spec.fit_samples}, angles_per_image {spec.angles_per_image}", flush=True)

    def progress(done: int, total: int, state: dict) -> None:
        cells = state.get("cells") or []
        if not cells or done == 0:
            print(f"[{time.perf_counter() - start:7.1f} s] 0/{total} cells", flush=True)
            return
        cell = cells[-1]
        what = "raw pixels" if cell["part"] == "raw" else "x".join(str(v) for v in cell["filter_shape"]) + " filters"
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cell.get("stage_time_s", {}).items())
        extra = ""
        if cell["part"] == "filter":
            extra = (f" | statuses {cell['statuses']} | RMSE 1 learned {cell['rmse_one_filter']:.3f},"
                     f" 1 random {cell['rmse_random_one_filter']:.3f}")
        else:
            extra = f" | RMSE raw {cell['rmse']:.3f}"
        print(f"[{time.perf_counter() - start:7.1f} s] {done}/{total} seed {cell['seed']} {what}: {stages}{extra} "
              f"| CPU {cpu_seconds():.0f} s | peak RSS {peak_rss_mb():.0f} MB", flush=True)

    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            result = run_experiment(spec, progress=progress, should_stop=lambda: False, map_cells=pool_map(pool))
    else:
        result = run_experiment(spec, progress=progress, should_stop=lambda: False)
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s (experiment {result['time_s']:.1f} s), CPU time {cpu_seconds():.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    def mean_sd(name: str) -> str:  # the sd is None for one seed
        sd = result[f"{name}_std"]
        return f"{result[name]:.3f}" + ("" if sd is None else f" +- {sd:.3f}")

    print(f"RMSE raw {mean_sd('rmse_raw')}, 1 learned {mean_sd('rmse_filter')}, 1 random {mean_sd('rmse_random')} "
          f"(mean +- sd over {len(result['seeds'])} seeds)", flush=True)
    for variant in result["variants"]:
        shape = "x".join(str(v) for v in variant["filter_shape"])
        parts = []
        for key in ("one_minus_raw", "one_minus_random", "all_minus_raw", "all_minus_random"):
            c = variant[key]
            interval = "n/a" if c["interval"] is None else f"[{c['interval'][0]:+.3f}, {c['interval'][1]:+.3f}]"
            parts.append(f"{key} {c['mean']:+.3f} {interval} {c['verdict']}")
        print(f"  {shape}: " + "; ".join(parts), flush=True)
    print(result["verdict"], flush=True)
    print(f"filter_helps {result['filter_helps']}, filter_beats_random {result['filter_beats_random']}", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "rotated_digits.png"), "wb") as fh:
            fh.write(render_figure(result))
        with open(os.path.join(args.out, "rotated_digits.json"), "w") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    main()

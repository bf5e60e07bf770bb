"""The 30 default ReLU solves of docs/architecture-core.md (Speed), dumped as JSON and compared between two trees.

Run: ``PYTHONPATH=<tree>/service python bench/compare_solves.py dump out.json`` for each tree (``--backend highs``
for the other backend), then ``python bench/compare_solves.py diff before.json after.json``. Five sizes from
(300, 12, 1) to (1000, 30, 3), six seeds each, ``coverage_samples=16``, ``w*`` given (recovery and the cone test's
prediction are in the result). The diff lists every member of the results' JSON that differs (timings, iteration
counts and solver evidence left out): floats with their largest relative and absolute difference, others by value.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

SIZES = [(300, 12, 1), (400, 16, 2), (600, 20, 2), (800, 24, 3), (1000, 30, 3)]
SEEDS = range(6)
#: Members that measure the run, not the answer.
IGNORED = {"solve_time_s", "seconds", "iterations", "outer_iterations", "working_set", "clarabel_status",
           "primal_residual", "dual_residual", "duality_gap", "message", "created_at"}


def dump(path: str, backend: str) -> None:
    from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve
    from cnnrelax.results import solve_result_json

    out = []
    for n, d, k in SIZES:
        for seed in SEEDS:
            pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
            result = solve(pp.problem, SolveOptions(coverage_samples=16, backend=backend), w_star=pp.w_star)
            out.append({"size": [n, d, k], "seed": seed,
                        "result": json.loads(json.dumps(solve_result_json(result), default=str))})
    with open(path, "w") as handle:
        json.dump(out, handle)


def _walk(a: Any, b: Any, path: str, found: dict[str, list[Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in IGNORED:
                _walk(a.get(key), b.get(key), f"{path}.{key}", found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for x, y in zip(a, b, strict=True):
            _walk(x, y, f"{path}[]", found)
    elif isinstance(a, float) and isinstance(b, float):
        if a != b:
            found.setdefault(path, []).append((abs(a - b) / max(abs(a), abs(b)), abs(a - b)))
    elif a != b:
        found.setdefault(path, []).append(None)


def diff(before: str, after: str) -> None:
    with open(before) as one, open(after) as two:
        a, b = json.load(one), json.load(two)
    found: dict[str, list[Any]] = {}
    for x, y in zip(a, b, strict=True):
        _walk(x["result"], y["result"], "", found)
    if not found:
        print(f"{len(a)} solves: identical (timings and solver evidence left out)")
    for path, items in sorted(found.items()):
        floats = [item for item in items if item is not None]
        if len(floats) == len(items):
            print(f"{path}: {len(items)} differ, largest relative {max(r for r, _ in floats):.1e}, "
                  f"absolute {max(d for _, d in floats):.1e}")
        else:
            print(f"{path}: {len(items)} differ (not floats)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("dump", help="solve the 30 instances and write their results")
    one.add_argument("path")
    one.add_argument("--backend", default="clarabel")
    two = sub.add_parser("diff", help="compare two dumps")
    two.add_argument("before")
    two.add_argument("after")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.path, args.backend)
    else:
        diff(args.before, args.after)


if __name__ == "__main__":
    main()

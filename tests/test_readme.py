"""The README's "Try it" examples run as written against a live server, and show what the README says.

The examples name ``http://127.0.0.1:8000``; the test points them at its own server on a free port and
changes nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_the_curl_sequence_runs_as_written(live_server) -> None:  # type: ignore[no-untyped-def]  # pytest fixture
    one_go = next(block for block in _blocks(_section("Try it"), "bash") if "id=$(curl" in block)
    script = one_go.replace("http://127.0.0.1:8000", live_server.url)
    answer = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    job = json.loads(answer.stdout)
    assert job["status"] == "succeeded", job
    result = job["result"]
    certificate = result["certificate"]
    # The fields the README's example shows and explains.
    assert certificate["global_optimum"] is True and certificate["summary"].startswith("Zero loss")
    cone = certificate["cone"]
    assert cone["applicable"] is True and isinstance(cone["certified_by_trials"], list)
    assert cone["certified"] == bool(cone["certified_by_trials"])
    coverage = certificate["coverage"]
    assert 12 <= coverage["directions"] <= 64 and 0.0 <= coverage["interval"][0] <= coverage["estimate"]
    assert coverage["estimate"] <= coverage["interval"][1] <= 1.0
    assert result["recovery_error"] < 1e-9


def test_the_python_example_runs_as_written(live_server, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]  # pytest fixture
    example = next(block for block in _blocks(_section("Try it"), "python") if "Client(" in block)
    exec(compile(example.replace("http://127.0.0.1:8000", live_server.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert float(printed[3]) < 1e-6  # the relative error of the recovered filter
    assert printed[4].startswith("422 ")  # the d = 11 mistake, as a problem with a sentence
    assert np.isfinite(float(printed[1].split()[0]))

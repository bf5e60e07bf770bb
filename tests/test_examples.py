"""The examples in examples/ run, at small sizes, as a user runs them: ``python examples/NAME.py`` in a fresh process.

Each script checks its own claims with ``assert`` (the certificate, the ONNX model's predictions, the refusal of a
perturbed filter, the warm start); here each must exit 0 and print what it promises. The PyTorch example is skipped
when torch is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script: str, tmp_path: Path, *args: str, **env: str) -> str:
    completed = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path, capture_output=True,
                               text=True, timeout=240, env={**os.environ, **env})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def test_every_example_is_a_py_percent_script() -> None:
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert len(scripts) == 3
    for script in scripts:
        text = script.read_text()
        assert text.startswith("# %% [markdown]") and text.count("# %%") >= 4, script.name


def test_fit_and_certify_a_planted_problem(tmp_path: Path) -> None:
    out = _run("01_fit_and_certify_planted.py", tmp_path, CNNRELAX_EXAMPLE_N="300")
    assert "global optimum: True" in out and "ONNX model" in out


def test_certify_a_pytorch_filter(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = _run("02_certify_a_pytorch_filter.py", tmp_path, CNNRELAX_EXAMPLE_N="300")
    assert "w is a global minimum" in out and "w does not reach zero loss" in out and "no trial ran" in out


def test_table1_on_your_own_images(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    images = np.zeros((40, 9, 9))
    images[:, 1:, 1:] = load_digits().images[:40]  # 9x9 images of the user's own
    np.savez(tmp_path / "mine.npz", images=images)
    out = _run("03_table1_on_your_images.py", tmp_path, str(tmp_path / "mine.npz"), CNNRELAX_EXAMPLE_IMAGES="40",
               CNNRELAX_EXAMPLE_SEEDS="2", CNNRELAX_EXAMPLE_OUT=str(tmp_path / "table1.svg"))
    assert "40 images of 9x9" in out and "pixels + learned filter" in out
    assert ET.parse(tmp_path / "table1.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"

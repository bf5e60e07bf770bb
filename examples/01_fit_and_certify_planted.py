# %% [markdown]
# # Fit and certify a planted problem
#
# A planted (teacher) network `y_i = sum_j relu(X_ij . w*)` is drawn from a seed; the randomized convex relaxation
# fits it, the certificate says what is proven, and the fitted network leaves as an ONNX model.
#
# Run it as a script (`python examples/01_fit_and_certify_planted.py`) or cell by cell in an editor that reads
# py:percent (VS Code, Spyder, Jupytext). `CNNRELAX_EXAMPLE_N` sets the number of samples (default 2000); the test
# suite runs it small. Everything runs in this process; the same calls over HTTP are
# `cnnrelax_client.Client(url).solve_planted(...)`, `client.certify(...)` and `client.download_model(job)`.

# %%
import os

import numpy as np

from cnnrelax.certification import certify_filter
from cnnrelax.core import PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.export.network import network_of
from cnnrelax.export.onnx import onnx_bytes

N = int(os.environ.get("CNNRELAX_EXAMPLE_N", "2000"))
drawn = planted_problem(PlantedSpec(n=N, d=20, k=2, seed=0))
problem = drawn.problem
print(f"n={problem.n} samples, k={problem.k} patches of length m={problem.m}")

# %% [markdown]
# ## Fit: seeded trials of the LP relaxation, polished, the least loss selected

# %%
result = solve(problem, SolveOptions(trials=8, seed=0))
assert result.w is not None and result.certificate is not None
print("relative error to w*:", np.linalg.norm(result.w - drawn.w_star) / np.linalg.norm(drawn.w_star))
print(result.certificate.summary)

# %% [markdown]
# ## Certify the filter as given: zero loss proves a global minimum; the cone test says which trial directions
# ## return it, and the coverage how likely one random direction is to

# %%
certificate = certify_filter(problem, result.w, SolveOptions(coverage_samples=128))
print("global optimum:", certificate.global_optimum)
print(certificate.cone.reason)
assert certificate.coverage is not None
print(certificate.coverage.reason)

# %% [markdown]
# ## Take the model away: ONNX (onnxruntime runs it) predicts as the fitted network

# %%
import onnxruntime  # noqa: E402 - the example imports what each step needs, where it is needed

model = onnx_bytes(network_of(problem, result.w))
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
predicted = session.run(None, {"X": problem.X})[0]
gap = float(np.max(np.abs(predicted - problem.predict(result.w))) / np.max(np.abs(problem.y)))
print(f"ONNX model: {len(model)} bytes; largest relative difference to the network's predictions {gap:.2e}")
assert certificate.global_optimum and gap <= 1e-6

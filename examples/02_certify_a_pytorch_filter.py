# %% [markdown]
# # Certify a filter trained by PyTorch
#
# PyTorch's L-BFGS trains the same network (`Conv1d(1, 1, m, stride=m)`, ReLU, a sum over the patches, float64).
# It reaches the planted filter on easy data as fast as anything; what it cannot give is a proof. cnnrelax
# certifies the filter it returns: zero loss proves a global minimum, the cone test says whether the convex
# relaxation would have found it. The same filter moved by 1e-3 is refused, with the reason.
#
# Needs PyTorch (`pip install torch`; the CPU build is enough): without it the script says so and stops.
# `CNNRELAX_EXAMPLE_N` sets the number of samples (default 2000). Over HTTP: `client.certify(w, X, y, k=2)`.

# %%
import os
import sys

import numpy as np

try:
    import torch
except ImportError:
    print("This example needs PyTorch: pip install torch")
    sys.exit(0)

from cnnrelax.certification import certify_filter
from cnnrelax.core import PlantedSpec, SolveOptions, planted_problem
from cnnrelax.warm_start import solve_from

N = int(os.environ.get("CNNRELAX_EXAMPLE_N", "2000"))
drawn = planted_problem(PlantedSpec(n=N, d=20, k=2, seed=1))
problem = drawn.problem
n, k, m = problem.patches.shape

# %% [markdown]
# ## Train with L-BFGS (restarting from a new initialisation when it stalls)

# %%
torch.manual_seed(0)
inputs = torch.from_numpy(np.ascontiguousarray(problem.X)).reshape(n, 1, k * m)
labels = torch.from_numpy(problem.y)
conv = torch.nn.Conv1d(1, 1, m, stride=m, bias=False).double()


def closure() -> torch.Tensor:
    optimiser.zero_grad()
    loss = torch.mean((torch.relu(conv(inputs)).sum(dim=(1, 2)) - labels) ** 2)
    loss.backward()
    return loss


def converged() -> bool:
    return float(closure().detach()) <= 1e-20 * float(torch.mean(labels**2))


restarts = 0
while True:
    optimiser = torch.optim.LBFGS(conv.parameters(), lr=1.0, max_iter=100, tolerance_grad=0.0, tolerance_change=0.0,
                                  history_size=20, line_search_fn="strong_wolfe")
    for _ in range(20):
        optimiser.step(closure)
        if converged():
            break
    if converged() or restarts == 10:
        break
    conv.reset_parameters()  # stalled at a spurious minimum: start again from a new initialisation
    restarts += 1
w = conv.weight.detach().numpy().reshape(-1).astype(np.float64)
error = np.linalg.norm(w - drawn.w_star) / np.linalg.norm(drawn.w_star)
print(f"L-BFGS after {restarts} restart(s): relative error to w* {error:.2e}")

# %% [markdown]
# ## Certify it

# %%
certificate = certify_filter(problem, w, SolveOptions(coverage_samples=64))
print(certificate.summary)
assert certificate.global_optimum

# %% [markdown]
# ## The same filter moved by 1e-3 is not certified, and the certificate says why

# %%
moved = w + 1e-3 * np.random.default_rng(0).standard_normal(w.shape)
refused = certify_filter(problem, moved, SolveOptions(coverage_samples=64))
print(refused.summary)
print("cone:", refused.cone.reason)
assert not refused.global_optimum

# %% [markdown]
# ## Or hand it to a solve as a warm start: polished and certified first, no trial needed

# %%
result, warm = solve_from(problem, moved, SolveOptions())
print(result.message)
print({key: warm[key] for key in ("polished", "certified", "selected")}, "trials run:", len(result.trials))
assert warm["certified"] and not result.trials

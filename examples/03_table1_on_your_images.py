# %% [markdown]
# # Table 1 on your own images
#
# The paper's rotated-digits regression: rotate each image by a random angle and predict the angle. The baseline is
# ridge regression on the raw pixels; the method fits a 2-D filter by the convex relaxation (QP, beta > 0), appends
# the filtered features `relu(X_ij . w)` to the pixels and fits ridge again. Reported: test RMSE in degrees, per seed,
# with the paired differences.
#
# Your images: an `.npz` with `images` (N x H x W) and optional `angles`, passed as the first argument
# (`python examples/03_table1_on_your_images.py my_images.npz`). Without one, the script makes a small stand-in set
# from scikit-learn's bundled 8x8 digits. `CNNRELAX_EXAMPLE_IMAGES` caps the images used (default 400) and
# `CNNRELAX_EXAMPLE_SEEDS` the replicate seeds (default 3). The figure is written as SVG (`table1.svg`, or
# `CNNRELAX_EXAMPLE_OUT`). Over HTTP the same run is `cnnrelax experiment digits --images my_images.npz --url ...`.

# %%
import os
import sys
from pathlib import Path

import numpy as np

from cnnrelax.experiments import parse_experiment_spec, render_figure, run_experiment

MAX_IMAGES = int(os.environ.get("CNNRELAX_EXAMPLE_IMAGES", "400"))
SEEDS = int(os.environ.get("CNNRELAX_EXAMPLE_SEEDS", "3"))
OUT = Path(os.environ.get("CNNRELAX_EXAMPLE_OUT", "table1.svg"))

# %% [markdown]
# ## The images: yours, or a stand-in from scikit-learn's digits

# %%
if len(sys.argv) > 1 and sys.argv[1].endswith(".npz"):
    with np.load(sys.argv[1], allow_pickle=False) as archive:
        images = np.asarray(archive["images"], dtype=np.float64)
        angles = np.asarray(archive["angles"], dtype=np.float64) if "angles" in archive.files else None
    print(f"{len(images)} images of {images.shape[1]}x{images.shape[2]} from {sys.argv[1]}")
else:
    from sklearn.datasets import load_digits

    images, angles = load_digits().images[:MAX_IMAGES].astype(np.float64), None
    print(f"no .npz given: {len(images)} of scikit-learn's 8x8 digits stand in for your images")

# %% [markdown]
# ## Run the experiment (the job function the service's workers run)

# %%
spec = {"kind": "rotated_digits", "seed": 0, "seeds": SEEDS, "images": images.tolist(), "max_images": MAX_IMAGES}
if angles is not None:
    spec["angles"] = angles.tolist()
typed = parse_experiment_spec(spec)
result = run_experiment(typed, progress=lambda done, total, state: print(f"\rcell {done}/{total}", end=""),
                        should_stop=lambda: False)
print()

# %% [markdown]
# ## Table 1: test RMSE (degrees), mean and sd over seeds

# %%
print(f"{'raw pixels (ridge)':<34}{result['rmse_raw']:8.3f} +- {result['rmse_raw_std']:.3f}")
print(f"{'pixels + learned filter':<34}{result['rmse_filter']:8.3f} +- {result['rmse_filter_std']:.3f}")
print(f"{'pixels + random filter':<34}{result['rmse_random']:8.3f} +- {result['rmse_random_std']:.3f}")
print("learned minus raw (paired):", result["learned_minus_raw"])
OUT.write_bytes(render_figure(result, "svg"))
print(f"figure written to {OUT}")

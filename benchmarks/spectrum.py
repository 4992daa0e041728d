"""Mode frequencies of the linearised network at init, per W init (Copy-Paste recipe study).

    python -m benchmarks.spectrum --out docs/results/spectrum

Near rest (rho(0) = 0, rho'(0) = 1) the network is ``phi'' = -(alpha I + W / beta) phi``: mode m
oscillates at omega_m = sqrt(eigenvalue m), and an eigenvalue below 0 is an unstable mode (the
network leaves rest and the tanh takes over). To tell apart recall steps two leapfrog steps
apart (dt = 0.5) after ~390 steps, a linear readout needs modes whose phases differ across the
window: the spread of omega is what it has to work with. Writes ``spectrum.md`` (a table per
init, over 5 seeds of the init key) and ``spectrum.png`` (histograms).
"""
from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

import rhel_jax
from experiments import checkpoints

N = 64
INITS = {  # name -> init_params keywords
    "gaussian w_scale=0.3 (old full config)": {"w_scale": 0.3},
    "gaussian w_scale=0.5 (quick config)": {"w_scale": 0.5},
    "gaussian w_scale=1.0 (issue's best probe)": {"w_scale": 1.0},
    "spectral [0.1, 3.0] (recipe)": {"spectrum": (1.0, 1.0, 0.1, 3.0)},
    "spectral [0.7, 1.3]": {"spectrum": (1.0, 1.0, 0.7, 1.3)},
}


def frequencies(kwargs: dict, seed: int, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
  """Eigenvalues of alpha I + Ws / beta as signed frequencies: sqrt(ev), or -sqrt(-ev) if unstable."""
  params = rhel_jax.init_params(jax.random.key(seed), 4, N, 3, **kwargs)
  ev = np.linalg.eigvalsh(alpha * np.eye(N) + np.asarray(rhel_jax.symmetric(params["W"]), np.float64) / beta)
  return np.sign(ev) * np.sqrt(np.abs(ev))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--seeds", type=int, default=5)
  args = parser.parse_args()
  lines = ["| W init (N=64, alpha=beta=1) | omega min | omega max | spread (max - min) | unstable modes |",
           "|---|---|---|---|---|"]
  data = {}
  for name, kwargs in INITS.items():
    per_seed = [frequencies(kwargs, s) for s in range(args.seeds)]
    data[name] = np.concatenate(per_seed)
    stable = [w[w > 0] for w in per_seed]
    lo = np.mean([w.min() for w in stable])
    hi = np.mean([w.max() for w in stable])
    unstable = np.mean([(w < 0).sum() for w in per_seed])
    lines.append(f"| {name} | {lo:.3f} | {hi:.3f} | {hi - lo:.3f} | {unstable:.1f} |")
  lines += ["", f"Means over {args.seeds} init keys. An unstable mode has a negative eigenvalue (shown as "
            "-sqrt(|ev|) in the plot): the network leaves rest along it and saturates."]
  args.out.mkdir(parents=True, exist_ok=True)
  text = "\n".join(lines) + "\n"
  checkpoints.atomic_write_text(args.out / "spectrum.md", text)
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(len(INITS), 1, figsize=(6, 1.6 * len(INITS)), sharex=True)
  for ax, (name, w) in zip(axes, data.items()):
    ax.hist(w, bins=np.linspace(-1.5, 3.2, 95), color="tab:blue")
    ax.set_title(name, fontsize=8)
    ax.axvline(0, color="k", lw=0.5)
  axes[-1].set_xlabel("omega (negative: unstable mode, -sqrt|eigenvalue|)")
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, args.out / "spectrum.png", dpi=100)
  plt.close(fig)
  print(text)


if __name__ == "__main__":
  main()

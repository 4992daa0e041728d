"""Mode frequencies of the linearised network at init per W init, and after training.

    python -m benchmarks.spectrum --out docs/results/copy_paste_recipe/init_spectrum
    python -m benchmarks.spectrum --out DIR --runs runs/copy_paste_full_a runs/copy_paste_full_b

Near rest (rho(0) = 0, rho'(0) = 1) the network is ``phi'' = -(alpha I + W / beta) phi``: mode m
oscillates at omega_m = sqrt(eigenvalue m), and an eigenvalue below 0 is an unstable mode (the
network leaves rest and the tanh takes over). To tell apart recall steps two leapfrog steps
apart (dt = 0.5) after ~390 steps, a linear readout needs modes whose phases differ across the
window: the spread of omega is what it has to work with. Writes ``spectrum.md`` (a table per
init, over 5 seeds of the init key) and ``spectrum.png`` (histograms). With ``--runs``, also
``trained.md``: the same numbers for each method's final ``W`` in those workdirs (per seed,
read from the newest checkpoint) and how far training moved ``W`` and ``B`` from their init.
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
    "spectral [0.1, 3.0] (first recipe)": {"spectrum": (1.0, 1.0, 0.1, 3.0)},
    "spectral [0.3, 3.0] (recipe)": {"spectrum": (1.0, 1.0, 0.3, 3.0)},
    "spectral [0.7, 1.3]": {"spectrum": (1.0, 1.0, 0.7, 1.3)},
}


def frequencies(kwargs: dict, seed: int, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
  """Eigenvalues of alpha I + Ws / beta as signed frequencies: sqrt(ev), or -sqrt(-ev) if unstable."""
  params = rhel_jax.init_params(jax.random.key(seed), 4, N, 3, **kwargs)
  return _linearised(np.asarray(params["W"], np.float64), alpha, beta)


def _linearised(w: np.ndarray, alpha: float, beta: float) -> np.ndarray:
  ev = np.linalg.eigvalsh(alpha * np.eye(len(w)) + (w + w.T) / 2 / beta)
  return np.sign(ev) * np.sqrt(np.abs(ev))


def trained_table(workdirs: list[pathlib.Path]) -> str:
  """Per (workdir, method): the trained W's mode frequencies and the distance from init, mean over seeds."""
  import json
  lines = ["| run | method | epoch | omega min | omega max | unstable modes | per seed | |W - W0| / |W0| | |B - B0| / |B0| |",
           "|---|---|---|---|---|---|---|---|---|"]
  for workdir in workdirs:
    config = json.loads((workdir / "config.json").read_text())
    m = config["model"]
    for method in config["methods"]:
      final = _newest_checkpoint(workdir / method)
      if final is None:
        continue
      epoch, params = final
      per_seed = [_linearised(np.asarray(w, np.float64), m["alpha"], m["beta"]) for w in params["W"]]
      stable = [w[w > 0] for w in per_seed]
      init = _init_params(config, len(per_seed))
      moved = {name: np.mean([np.linalg.norm(a - b) / np.linalg.norm(b)
                              for a, b in zip(np.asarray(params[name]), init[name])]) for name in ("W", "B")}
      lines.append(f"| {workdir.name} | {method} | {epoch} | {np.mean([w.min() for w in stable]):.3f} | "
                   f"{np.mean([w.max() for w in stable]):.3f} | {np.mean([(w < 0).sum() for w in per_seed]):.1f} | "
                   f"{[int((w < 0).sum()) for w in per_seed]} | "
                   f"{moved['W']:.3f} | {moved['B']:.3f} |")
  return "\n".join(lines) + "\n"


def _newest_checkpoint(directory: pathlib.Path):
  """(epoch, params) of the newest checkpoint, or None; params keep their leading seed axis."""
  try:
    return checkpoints.restore_params(directory)
  except FileNotFoundError:
    return None


def _init_params(config: dict, num_seeds: int) -> dict:
  """The sweep's initial parameters, rebuilt from the config exactly as the trainer draws them."""
  import json
  import ml_collections
  from experiments import copy_paste, heidelberg_digits, train
  from experiments.tasks import build_task
  module = copy_paste if config["task"]["name"] == "copy_paste" else heidelberg_digits
  # Fields newer than the run take the value that behaves as the code did before them.
  def overlay(base, saved):
    return {k: overlay(v, saved[k]) if isinstance(v, dict) and k in saved else saved.get(k, v)
            for k, v in base.items()}
  config = train.with_added_fields(config)
  cfg = ml_collections.ConfigDict(overlay(json.loads(module.get_config().to_json_best_effort()), config))
  task = build_task(cfg, np.float32)
  trainer = train.MethodTrainer(cfg, task, config["methods"][0], np.float32)
  init_keys = train.seed_keys(cfg.seed, num_seeds)[0]
  return jax.tree.map(np.asarray, trainer.init(init_keys)["params"])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--runs", type=pathlib.Path, nargs="*", default=[],
                      help="workdirs whose trained W to analyse as well (writes trained.md)")
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
  if args.runs:
    trained = trained_table(args.runs)
    checkpoints.atomic_write_text(args.out / "trained.md", trained)
    print(trained)


if __name__ == "__main__":
  main()

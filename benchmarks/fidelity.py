"""Gradient fidelity study: cosine of rhel / rhel_centered with float64 BPTT versus eps, precision and T.

    python -m benchmarks.fidelity --out docs/results/fidelity          # ~15 min on 2 CPU cores
    python -m benchmarks.fidelity --quick                               # T in {100, 400}, 3 eps, ~1 min

Copy-Paste batches (64 sequences, BCE on the recall window, the loss the experiments train), the
Copy-Paste model (N=64, dt=0.5, init scale 0.3), T in {100, 400, 1000, 4000}. Two parameter sets:
``init`` (the seed-0 initialisation) and ``trained`` (the same network after ``--train-steps``
Adam steps of float64 BPTT on 400-step Copy-Paste, made here so that the study needs no earlier
run). Precisions: float64, float32, and float32 in exact-reversible mode. The reference is
float64 BPTT (``jax.grad``) on the same parameters and batch, for every T.

Each measurement is one JSON line; ``--out`` also gets ``fidelity.jsonl``, ``fidelity.md``
(best eps per setting, and the cosine at the library's default eps) and ``fidelity.png``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

N_HIDDEN, BATCH, TRAIN_T = 64, 64, 400
EPS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
MODES = ("float64", "float32", "float32+exact")


def _setup():
  import jax
  jax.config.update("jax_enable_x64", True)


def train_params(steps: int, log=print):
  """Seed-0 Copy-Paste network after ``steps`` Adam steps of float64 BPTT at T=400, batch 32."""
  import jax
  import jax.numpy as jnp
  import optax
  import rhel_jax
  from rhel_jax.copy_task import CopyTask, metrics
  from rhel_jax.gradients import bptt
  task, model = CopyTask(seq_len=TRAIN_T), rhel_jax.ModelConfig(dt=0.5)
  params = init(task)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))

  @jax.jit
  def run(params, opt_state, key):
    def step(carry, k):
      params, opt_state = carry
      x, y, m = task.sample(k, 32, jnp.float64)
      loss, grads = bptt(params, model, jnp.swapaxes(x, 0, 1), y, jnp.broadcast_to(m, (32, TRAIN_T)), rhel_jax.bce)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))

  start = time.perf_counter()
  (params, _), losses = run(params, optimizer.init(params), jax.random.key(7))
  x, y, m = task.sample(jax.random.key(8), 512, jnp.float64)
  acc = metrics(rhel_jax.forward(params, model, x), y, m)
  log(f"trained {steps} steps in {time.perf_counter() - start:.0f} s: loss {float(losses[-1]):.3f}, "
      f"test bit accuracy {100 * float(acc['bit_acc']):.1f}%")
  return params, float(acc["bit_acc"])


def init(task):
  import jax
  import jax.numpy as jnp
  import rhel_jax
  return rhel_jax.init_params(jax.random.key(0), task.n_in, N_HIDDEN, task.n_out, dtype=jnp.float64,
                              w_scale=0.3, in_scale=0.3)


def measure(params_sets: dict, lengths, eps_values, log=print) -> list[dict]:
  import dataclasses
  import jax
  import jax.numpy as jnp
  import numpy as np
  import rhel_jax
  from rhel_jax.copy_task import CopyTask

  flat = lambda g: np.concatenate([np.ravel(g[k]) for k in rhel_jax.PARAM_NAMES]).astype(np.float64)
  model = rhel_jax.ModelConfig(dt=0.5)
  rows = []
  for name, p64 in params_sets.items():
    for steps in lengths:
      x, y, m = CopyTask(seq_len=steps).sample(jax.random.key(1), BATCH, jnp.float64)
      m = jnp.broadcast_to(m, (BATCH, steps))
      ref = flat(rhel_jax.gradient("bptt", p64, model, x, y, m, loss="bce")[1])
      for mode in MODES:
        dtype = jnp.float64 if mode == "float64" else jnp.float32
        mode_model = dataclasses.replace(model, exact_reversible=mode.endswith("+exact"))
        params = jax.tree.map(lambda a: a.astype(dtype), p64)
        for method in ("rhel", "rhel_centered"):
          for eps in eps_values:
            row = {"params": name, "T": steps, "mode": mode, "method": method, "eps": eps}
            try:
              g = flat(rhel_jax.gradient(method, params, mode_model, x.astype(dtype), y.astype(dtype),
                                         m.astype(dtype), loss="bce", eps=eps)[1])
              row["cos"] = float(g @ ref / np.linalg.norm(g) / np.linalg.norm(ref))
              row["relerr"] = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))
            except ValueError as e:  # a non-finite estimate or a grid overflow, reported by gradient()
              row["error"] = str(e)[:200]
            rows.append(row)
            log(json.dumps(row))
  return rows


def write_report(rows: list[dict], out: pathlib.Path, header: list[str]) -> None:
  import math
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from rhel_jax.gradients import DEFAULT_EPS
  out.mkdir(parents=True, exist_ok=True)
  (out / "fidelity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  sets = list(dict.fromkeys(r["params"] for r in rows))
  lengths = sorted({r["T"] for r in rows})
  ok = [r for r in rows if "cos" in r]
  lines = header + ["", "Best eps (largest cosine with float64 BPTT) per setting, and the cosine at the "
                    "default eps (`DEFAULT_EPS`: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_EPS.items()) + ").",
                    "", "| params | T | precision | method | best eps | 1 - cos at best eps | 1 - cos at default eps |",
                    "|---|---|---|---|---|---|---|"]
  for name in sets:
    for steps in lengths:
      for mode in MODES:
        for method in ("rhel", "rhel_centered"):
          sel = [r for r in ok if (r["params"], r["T"], r["mode"], r["method"]) == (name, steps, mode, method)]
          if not sel:
            continue
          best = max(sel, key=lambda r: r["cos"])
          default = DEFAULT_EPS["float64" if mode == "float64" else "float32"]
          at_default = [r["cos"] for r in sel if math.isclose(r["eps"], default)]
          lines.append(f"| {name} | {steps} | {mode} | {method} | {best['eps']:g} | {1 - best['cos']:.1e} | "
                       + (f"{1 - at_default[0]:.1e}" if at_default else "-") + " |")
  (out / "fidelity.md").write_text("\n".join(lines) + "\n")
  fig, axes = plt.subplots(len(sets), len(lengths), figsize=(3.2 * len(lengths), 3.0 * len(sets)),
                           squeeze=False, sharey=True)
  styles = {"float64": "-", "float32": "--", "float32+exact": ":"}
  colors = {"rhel": "C0", "rhel_centered": "C1"}
  for i, name in enumerate(sets):
    for j, steps in enumerate(lengths):
      ax = axes[i, j]
      for mode in MODES:
        for method in ("rhel", "rhel_centered"):
          sel = sorted((r for r in ok if (r["params"], r["T"], r["mode"], r["method"]) == (name, steps, mode, method)),
                       key=lambda r: r["eps"])
          if sel:
            ax.loglog([r["eps"] for r in sel], [max(1 - r["cos"], 1e-16) for r in sel], styles[mode],
                      color=colors[method], marker="o", ms=3, label=f"{method}, {mode}")
      ax.set_title(f"{name} params, T={steps}", fontsize=9)
      ax.grid(alpha=0.3, which="both")
      if i == len(sets) - 1:
        ax.set_xlabel("eps (per sequence)")
      if j == 0:
        ax.set_ylabel("1 - cos(method, BPTT float64)")
  axes[0, 0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(out / "fidelity.png", dpi=90)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=pathlib.Path)
  parser.add_argument("--train-steps", type=int, default=1500)
  args = parser.parse_args()
  if args.train_steps < 1:
    parser.error(f"--train-steps must be >= 1, got {args.train_steps}")
  _setup()
  from rhel_jax.copy_task import CopyTask
  lengths = (100, 400) if args.quick else (100, 400, 1000, 4000)
  eps_values = (1e-1, 1e-3, 1e-5) if args.quick else EPS
  trained, acc = train_params(100 if args.quick else args.train_steps)
  rows = measure({"init": init(CopyTask(seq_len=TRAIN_T)), "trained": trained}, lengths, eps_values)
  if args.out:
    from experiments.train import _git_revision
    header = ["# Gradient fidelity versus eps, precision and T", "",
              f"- command: `python -m benchmarks.fidelity{' --quick' if args.quick else ''} --out {args.out}`",
              f"- git revision: `{_git_revision()}`",
              f"- Copy-Paste batch of {BATCH}, BCE, N={N_HIDDEN}, dt=0.5; trained params: "
              f"{100 if args.quick else args.train_steps} Adam steps of BPTT at T={TRAIN_T} "
              f"(test bit accuracy {100 * acc:.1f}%)"]
    write_report(rows, args.out, header)


if __name__ == "__main__":
  main()

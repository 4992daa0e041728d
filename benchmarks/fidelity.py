"""Gradient fidelity study: cosine of rhel / rhel_centered with float64 BPTT versus eps, precision and T.

    python -m benchmarks.fidelity --out docs/results/fidelity          # ~10 min on 2 CPU cores
    python -m benchmarks.fidelity --quick                               # T in {100, 400}, 3 eps, ~1 min

Two tasks with the two loss shapes of the experiments: ``copy`` (Copy-Paste batches, BCE summed
over the recall window) and ``classify`` (a synthetic 10-way sequence classification with
``ce_mean``, the Heidelberg Digits loss: logits averaged over all steps, so the per-step loss
gradient is ~1/T as large). The model is the Copy-Paste one (N=64, dt=0.5, init scale 0.3),
T in {100, 400, 1000, 4000}, batch 64. Two parameter sets per task: ``init`` (seed 0) and
``trained`` (the same network after ``--train-steps`` Adam steps of float64 BPTT at T=400,
made here so that the study needs no earlier run). Precisions: float64, float32, and float32 in
exact-reversible mode. The reference is float64 BPTT (``jax.grad``) on the same parameters and
batch. The recommended eps per precision is the one with the best worst-case cosine over both
estimators, both parameter sets and every T, per task and over both, leaving out the settings
where that precision reaches no cosine of 0.99 at any eps.

Each measurement is one JSON line; ``--out`` also gets ``fidelity.jsonl``, ``fidelity.md``
(recommended eps, best eps per setting, and the cosine at the library's default eps) and
``fidelity.png``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Optional

N_HIDDEN, BATCH, TRAIN_T = 64, 64, 400
EPS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
MODES = ("float64", "float32", "float32+exact")
N_CLASSES, N_CHANNELS = 10, 8


def _setup():
  import jax
  jax.config.update("jax_enable_x64", True)


def sample(task: str, key, batch: int, steps: int):
  """(inputs (batch, T, n_in), targets, mask (batch, T)) in float64, and the loss name."""
  import jax
  import jax.numpy as jnp
  from experiments.tasks.copy_paste import CopyTask
  if task == "copy":
    x, y, m = CopyTask(seq_len=steps).sample(key, batch, jnp.float64)
    return x, y, jnp.broadcast_to(m, (batch, steps)), "bce"
  # classify: class c is a fixed set of slow sinusoids per channel (the same for every T), plus noise.
  k_y, k_n = jax.random.split(key)
  labels = jax.random.randint(k_y, (batch,), 0, N_CLASSES)
  freq = jax.random.uniform(jax.random.key(99), (N_CLASSES, N_CHANNELS), jnp.float64, 0.5, 3.0)
  phase = jax.random.uniform(jax.random.key(98), (N_CLASSES, N_CHANNELS), jnp.float64, 0.0, 6.3)
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  x = jnp.sin(2 * jnp.pi * freq[labels][:, None, :] * t + phase[labels][:, None, :])
  # Amplitude 0.3: at 1.0 the continuous drive pumps the untrained network into chaos by T=4000.
  x = 0.3 * (x + 0.5 * jax.random.normal(k_n, x.shape, jnp.float64))
  return x, labels, jnp.ones((batch, steps), jnp.float64), "ce_mean"


def _sizes(task: str) -> tuple[int, int]:
  return (4, 3) if task == "copy" else (N_CHANNELS, N_CLASSES)


def init(task: str):
  import jax
  import jax.numpy as jnp
  import rhel_jax
  n_in, n_out = _sizes(task)
  return rhel_jax.init_params(jax.random.key(0), n_in, N_HIDDEN, n_out, dtype=jnp.float64,
                              w_scale=0.3, in_scale=0.3)


def train_params(task: str, steps: int, log=print):
  """The ``init`` network after ``steps`` Adam steps of float64 BPTT at T=400, batch 32.

  Returns the parameters and the test score (copy: per-bit accuracy; classify: accuracy).
  """
  import jax
  import jax.numpy as jnp
  import optax
  import rhel_jax
  from experiments.tasks.copy_paste import metrics
  model = rhel_jax.ModelConfig(dt=0.5)
  # The classifier diverged at 3e-3 (test accuracy back at chance); 1e-3 trains it.
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3 if task == "copy" else 1e-3))
  bptt = rhel_jax.METHODS["bptt"].bind(model, "bce" if task == "copy" else "ce_mean")

  @jax.jit
  def run(params, opt_state, key):
    def step(carry, k):
      params, opt_state = carry
      x, y, m, _ = sample(task, k, 32, TRAIN_T)
      loss, grads = bptt(params, x, y, m)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))

  start = time.perf_counter()
  params = init(task)
  (params, _), losses = run(params, optimizer.init(params), jax.random.key(7))
  x, y, m, _ = sample(task, jax.random.key(8), 512, TRAIN_T)
  ys = rhel_jax.forward(params, model, x)
  if task == "copy":
    score = float(metrics(ys, y, m[0])["bit_acc"])
  else:
    score = float(jnp.mean(jnp.argmax(jnp.mean(ys, 1), -1) == y))
  log(f"{task}: trained {steps} steps in {time.perf_counter() - start:.0f} s: loss {float(losses[-1]):.3f}, "
      f"test score {100 * score:.1f}%")
  return params, score


def measure(params_sets: dict, lengths, eps_values, log=print) -> list[dict]:
  """params_sets: {(task, name): float64 params}. One row per (task, params, T, mode, method, eps)."""
  from rhel_jax.methods import nudged
  import dataclasses
  import jax
  import jax.numpy as jnp
  import rhel_jax
  from benchmarks.core_check import agreement, flatten

  model = rhel_jax.ModelConfig(dt=0.5)
  rows = []
  for (task, name), p64 in params_sets.items():
    for steps in lengths:
      x, y, m, loss = sample(task, jax.random.key(1), BATCH, steps)
      ref = flatten(rhel_jax.gradient("bptt", p64, model, x, y, m, loss=loss)[1])
      for mode in MODES:
        dtype = jnp.float64 if mode == "float64" else jnp.float32
        mode_model = dataclasses.replace(model, exact_reversible=mode.endswith("+exact"))
        params = jax.tree.map(lambda a: a.astype(dtype), p64)
        for method in nudged():
          for eps in eps_values:
            row = {"task": task, "params": name, "T": steps, "mode": mode, "method": method, "eps": eps}
            try:
              g = flatten(rhel_jax.gradient(method, params, mode_model, x.astype(dtype),
                                            y if loss == "ce_mean" else y.astype(dtype), m.astype(dtype),
                                            loss=loss, eps=eps)[1])
              row.update(agreement(g, ref))
            except ValueError as e:  # a non-finite estimate or a grid overflow, reported by gradient()
              row["error"] = str(e)[:200]
            rows.append(row)
            log(json.dumps(row))
  return rows


def failing_settings(rows: list[dict], mode: str) -> list[tuple]:
  """(task, params, T) where ``mode`` reaches no cosine of 0.99 with either estimator at any eps:
  no choice of eps helps there (chaotic dynamics, or round-off the precision cannot beat)."""
  settings = dict.fromkeys((r["task"], r["params"], r["T"]) for r in rows)
  best = {s: max((r.get("cos", -1.0) for r in rows if (r["task"], r["params"], r["T"]) == s
                  and r["mode"] == mode), default=-1.0) for s in settings}
  return [s for s in settings if best[s] < 0.99]


def recommended_eps(rows: list[dict], task: Optional[str] = None) -> dict[str, tuple[float, float]]:
  """Per precision: the eps whose worst cosine (over tasks, params, T and both estimators, leaving
  out that precision's failing settings) is largest, and that worst cosine. ``task`` restricts
  the rows to one task. A failed estimate counts as cosine -1."""
  rows = [r for r in rows if task is None or r["task"] == task]
  out = {}
  for mode in dict.fromkeys(r["mode"] for r in rows):
    failing = set(failing_settings(rows, mode))
    worst = {}
    for r in rows:
      if r["mode"] == mode and (r["task"], r["params"], r["T"]) not in failing:
        worst[r["eps"]] = min(worst.get(r["eps"], 1.0), r.get("cos", -1.0))
    if worst:
      best = max(worst, key=worst.get)
      out[mode] = (best, worst[best])
  return out


def write_report(rows: list[dict], out: pathlib.Path, header: list[str]) -> None:
  from rhel_jax.methods import nudged
  import math
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import rhel_jax
  from experiments import checkpoints
  out.mkdir(parents=True, exist_ok=True)
  checkpoints.write_jsonl(out / "fidelity.jsonl", rows)
  sets = list(dict.fromkeys((r["task"], r["params"]) for r in rows))
  lengths = sorted({r["T"] for r in rows})
  ok = [r for r in rows if "cos" in r]
  defaults = {mode: rhel_jax.default_eps("float64" if mode == "float64" else "float32",
                                         rhel_jax.ModelConfig(exact_reversible=mode.endswith("+exact")))
              for mode in MODES}
  lines = header + ["", "## Recommended eps", "",
                    "Per precision, the eps with the best worst-case cosine over the settings (task, parameters, "
                    "T) where that precision can work at all, i.e. reaches a cosine of 0.99 at some eps; the "
                    "others are listed. Per task and over both tasks, with the library's default "
                    "(`rhel_jax.default_eps`).", "",
                    "| precision | settings left out | tasks | recommended eps | worst 1 - cos there "
                    "| library default | worst 1 - cos at the default |", "|---|---|---|---|---|---|---|"]
  for mode in MODES:
    failing = failing_settings(rows, mode)
    left_out = ", ".join(f"{t} {p} T={T}" for t, p, T in failing) or "none"
    failing = set(failing)
    for task in ("copy", "classify", None):
      rec = recommended_eps(rows, task).get(mode)
      sel = [r for r in rows if r["mode"] == mode and (task is None or r["task"] == task)
             and (r["task"], r["params"], r["T"]) not in failing]
      at_default = [r.get("cos", -1.0) for r in sel if math.isclose(r["eps"], defaults[mode])]
      lines.append(f"| {mode} | {left_out if task is None else ''} | {task or 'both'} | "
                   + (f"{rec[0]:g} | {1 - rec[1]:.1e}" if rec else "- | -") + f" | {defaults[mode]:g} | "
                   + (f"{1 - min(at_default):.1e}" if at_default else "not measured") + " |")
  lines += ["", "## Per setting", "", "| task | params | T | precision | method | best eps | 1 - cos at best eps "
            "| 1 - cos at default eps |", "|---|---|---|---|---|---|---|---|"]
  for task, name in sets:
    for steps in lengths:
      for mode in MODES:
        for method in nudged():
          sel = [r for r in ok if (r["task"], r["params"], r["T"], r["mode"], r["method"]) ==
                 (task, name, steps, mode, method)]
          if not sel:
            continue
          best = max(sel, key=lambda r: r["cos"])
          at_default = [r["cos"] for r in sel if math.isclose(r["eps"], defaults[mode])]
          lines.append(f"| {task} | {name} | {steps} | {mode} | {method} | {best['eps']:g} | {1 - best['cos']:.1e} | "
                       + (f"{1 - at_default[0]:.1e}" if at_default else "-") + " |")
  checkpoints.atomic_write_text(out / "fidelity.md", "\n".join(lines) + "\n")
  fig, axes = plt.subplots(len(sets), len(lengths), figsize=(3.2 * len(lengths), 2.8 * len(sets)),
                           squeeze=False, sharey=True)
  styles = {"float64": "-", "float32": "--", "float32+exact": ":"}
  colors = {m: f"C{i}" for i, m in enumerate(nudged())}
  for i, (task, name) in enumerate(sets):
    for j, steps in enumerate(lengths):
      ax = axes[i, j]
      for mode in MODES:
        for method in nudged():
          sel = sorted((r for r in ok if (r["task"], r["params"], r["T"], r["mode"], r["method"]) ==
                        (task, name, steps, mode, method)), key=lambda r: r["eps"])
          if sel:
            ax.loglog([r["eps"] for r in sel], [max(1 - r["cos"], 1e-16) for r in sel], styles[mode],
                      color=colors[method], marker="o", ms=3, label=f"{method}, {mode}")
      ax.set_title(f"{task}, {name} params, T={steps}", fontsize=9)
      ax.grid(alpha=0.3, which="both")
      if i == len(sets) - 1:
        ax.set_xlabel("eps (per sequence)")
      if j == 0:
        ax.set_ylabel("1 - cos with BPTT (f64)")
  axes[0, 0].legend(fontsize=6)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, out / "fidelity.png", dpi=80)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=pathlib.Path)
  parser.add_argument("--train-steps", type=int, default=1500)
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite fidelity.md and fidelity.png in --out from its fidelity.jsonl (no measuring)")
  args = parser.parse_args()
  if args.train_steps < 1:
    parser.error(f"--train-steps must be >= 1, got {args.train_steps}")
  if args.report_only:
    if not args.out or not (args.out / "fidelity.jsonl").is_file():
      parser.error("--report-only needs --out DIR holding fidelity.jsonl")
    from experiments import checkpoints
    from experiments.workdir import git_revision as _git_revision
    rows = checkpoints.read_jsonl(args.out / "fidelity.jsonl")
    header = (args.out / "fidelity.md").read_text().split("\n## ")[0].rstrip().splitlines()
    header = [h for h in header if not h.startswith("- report rewritten")]
    write_report(rows, args.out, header + [f"- report rewritten at git revision `{_git_revision()}` "
                                           f"(`python -m benchmarks.fidelity --report-only --out {args.out}`)"])
    return
  _setup()
  lengths = (100, 400) if args.quick else (100, 400, 1000, 4000)
  eps_values = (1e-1, 1e-3, 1e-5) if args.quick else EPS
  steps = 100 if args.quick else args.train_steps
  params_sets, scores = {}, {}
  for task in ("copy", "classify"):
    params_sets[task, "init"] = init(task)
    params_sets[task, "trained"], scores[task] = train_params(task, steps)
  rows = measure(params_sets, lengths, eps_values)
  for mode, (eps, worst) in recommended_eps(rows).items():
    print(f"recommended eps for {mode}: {eps:g} (worst cosine {worst:.6f})")
  if args.out:
    from experiments.workdir import git_revision as _git_revision
    header = ["# Gradient fidelity versus eps, precision and T", "",
              f"- command: `python -m benchmarks.fidelity{' --quick' if args.quick else ''} --out {args.out}`",
              f"- git revision: `{_git_revision()}`",
              f"- batch {BATCH}, N={N_HIDDEN}, dt=0.5, init scale 0.3; trained params: {steps} Adam steps of "
              f"float64 BPTT at T={TRAIN_T} (test score: copy {100 * scores['copy']:.1f}% per bit, "
              f"classify {100 * scores['classify']:.1f}%)"]
    write_report(rows, args.out, header)


if __name__ == "__main__":
  main()

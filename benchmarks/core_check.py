"""Measures the core's acceptance numbers: gradient fidelity and memory versus T.

    python -m benchmarks.core_check             # both parts, prints JSON lines
    python -m benchmarks.core_check --part=fidelity
    python -m benchmarks.core_check --part=memory
    python -m benchmarks.core_check --part=eps          # float32 vs float64 eps sweep on Copy-Paste
    python -m benchmarks.core_check --part=exact --out docs/results/exact_mode/error   # exact mode vs float64

fidelity: float64, random 32-unit network (init_params defaults), T=300, batch 8, MSE on random
targets: cosine and relative error of each method against jax.grad BPTT, per parameter tensor.
memory: N=128, batch 64, float32, T in {400, 4000}; each (method, T) in a fresh process, which
reports its peak resident memory (VmHWM) and XLA's buffer sizes for the compiled gradient.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def flatten(grads):
  """All parameter gradients as one float64 vector, in ``PARAM_NAMES`` order."""
  import numpy as np
  from rhel_jax.model import PARAM_NAMES
  return np.concatenate([np.ravel(grads[k]) for k in PARAM_NAMES]).astype(np.float64)


def agreement(g, ref) -> dict[str, float]:
  """Cosine and relative error of the vector ``g`` against ``ref``."""
  from rhel_jax.alignment import agreement as host_agreement
  return host_agreement(g, ref)


def _fidelity():
  import jax
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import rhel_jax

  k_p, k_x, k_y = jax.random.split(jax.random.key(0), 3)
  params = rhel_jax.init_params(k_p, n_in=4, n_hidden=32, n_out=3, dtype=jnp.float64)
  model = rhel_jax.ModelConfig(alpha=1.0, beta=1.0, dt=0.2)
  inputs = jax.random.normal(k_x, (8, 300, 4), jnp.float64)
  targets = jax.random.normal(k_y, (8, 300, 3), jnp.float64)
  mask = jnp.ones((8, 300))
  _, ref = rhel_jax.gradient("bptt", params, model, inputs, targets, mask, loss="mse")
  for method, eps in (("rhel_centered", 1e-5), ("rhel", 1e-6), ("rhel", 1e-5), ("eprop", None),
                      ("tbptt", None)):
    options = {"eps": eps} if eps else {}
    _, grads = rhel_jax.gradient(method, params, model, inputs, targets, mask, loss="mse", **options)
    row = {"part": "fidelity", "method": method, "eps": eps}
    for key in ref:
      both = agreement(grads[key], ref[key])
      row[f"cos_{key}"], row[f"relerr_{key}"] = both["cos"], both["relerr"]
    print(json.dumps(row), flush=True)


def _eps_sweep():
  """Cosine of rhel / rhel_centered with float64 BPTT versus eps, in float32 and float64, on a
  Copy-Paste batch at initialisation (the data behind the configs' eps = 1e-3)."""
  from rhel_jax.methods import nudged
  import jax
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import rhel_jax
  from experiments.tasks.copy_paste import CopyTask

  for steps, scale in ((100, 1.0), (400, 0.3)):
    model = rhel_jax.ModelConfig(dt=0.5)
    inputs, targets, mask = CopyTask(seq_len=steps).sample(jax.random.key(1), 64, jnp.float64)
    p64 = rhel_jax.init_params(jax.random.key(0), 4, 64, 3, dtype=jnp.float64, w_scale=scale, in_scale=scale)
    ref = flatten(rhel_jax.gradient("bptt", p64, model, inputs, targets, mask, loss="bce")[1])
    for dtype in (jnp.float32, jnp.float64):
      params = jax.tree.map(lambda a: a.astype(dtype), p64)
      for method in nudged():
        for eps in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5):
          g = flatten(rhel_jax.gradient(method, params, model, inputs.astype(dtype), targets.astype(dtype), mask,
                                     loss="bce", eps=eps)[1])
          print(json.dumps({"part": "eps", "T": steps, "init_scale": scale, "dtype": jnp.dtype(dtype).name,
                            "method": method, "eps": eps, **agreement(g, ref)}), flush=True)


def _exact_sweep():
  """Relative error against float64 BPTT of rhel / rhel_centered versus eps, for float64,
  float32 and float32 in exact-reversible mode (grid_bits 20 and 26): N=32, batch 8, MSE on the
  last 200 steps, T in {400, 1000, 4000}; weak coupling (W and input scaled by 0.1) and strong
  (scale 1.0)."""
  from rhel_jax.methods import nudged
  import jax
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  import numpy as np
  import rhel_jax

  rows = []
  float_model = rhel_jax.ModelConfig(dt=0.2)
  modes = (("float64", jnp.float64, float_model), ("float32", jnp.float32, float_model),
           ("float32_exact20", jnp.float32, rhel_jax.ModelConfig(dt=0.2, exact_reversible=True, grid_bits=20)),
           ("float32_exact26", jnp.float32, rhel_jax.ModelConfig(dt=0.2, exact_reversible=True, grid_bits=26)))
  for coupling, scale in (("weak", 0.1), ("strong", 1.0)):
    for steps in (400, 1000, 4000):
      k_p, k_x, k_y = jax.random.split(jax.random.key(0), 3)
      p64 = rhel_jax.init_params(k_p, 4, 32, 3, dtype=jnp.float64, w_scale=scale)
      inputs = scale * jax.random.normal(k_x, (8, steps, 4), jnp.float64)
      targets = jax.random.normal(k_y, (8, steps, 3), jnp.float64)
      mask = jnp.zeros((8, steps)).at[:, -200:].set(1.0)
      ref = flatten(rhel_jax.gradient("bptt", p64, float_model, inputs, targets, mask)[1])
      ref_norm = float(np.linalg.norm(ref))
      for mode, dtype, model in modes:
        params = jax.tree.map(lambda a: a.astype(dtype), p64)
        for method in nudged():
          for eps in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
            row = {"part": "exact", "coupling": coupling, "T": steps, "mode": mode, "method": method, "eps": eps,
                   "bptt_norm": ref_norm}
            try:
              g = flatten(rhel_jax.gradient(method, params, model, inputs.astype(dtype), targets.astype(dtype),
                                            mask.astype(dtype), eps=eps)[1])
              row.update(agreement(g, ref))
            except ValueError as e:  # a reported overflow or non-finite result
              row["error"] = str(e)[:200]
            print(json.dumps(row), flush=True)
            rows.append(row)
  return rows


def write_exact_report(rows: list[dict], out) -> None:
  """exact.jsonl, exact.md (the issue-7 target check and the best errors) and exact.png."""
  from rhel_jax.methods import nudged
  import pathlib
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from experiments import checkpoints
  from experiments.workdir import git_revision as _git_revision
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  checkpoints.write_jsonl(out / "exact.jsonl", rows)
  err = {(r["coupling"], r["T"], r["mode"], r["method"], r["eps"]): r.get("relerr", float("nan")) for r in rows}
  modes = list(dict.fromkeys(r["mode"] for r in rows))
  couplings = list(dict.fromkeys(r["coupling"] for r in rows))
  lengths = sorted({r["T"] for r in rows})
  eps_values = sorted({r["eps"] for r in rows}, reverse=True)
  lines = ["# Exact-reversible mode: error against float64 BPTT", "",
           "- command: `python -m benchmarks.core_check --part=exact --out docs/results/exact_mode/error`",
           f"- git revision: `{_git_revision()}`",
           "- N=32, batch 8, MSE on the last 200 steps, dt=0.2; weak: W and inputs x0.1, strong: x1.0",
           "- relative error |g - g_bptt| / |g_bptt| against float64 BPTT; `nan` = the estimate was not finite",
           "", "## Target: one-sided rhel, weak coupling, T=4000", "",
           "| eps | float64 | float32 | float32 + exact (26 bit) | exact / float64 |", "|---|---|---|---|---|"]
  for eps in eps_values:
    f64, f32, ex = (err.get(("weak", 4000, m, "rhel", eps), float("nan"))
                    for m in ("float64", "float32", "float32_exact26"))
    lines.append(f"| {eps:g} | {f64:.2e} | {f32:.2e} | {ex:.2e} | {ex / f64:.2f} |")
  lines += ["", "## All settings (relative error per eps)", "",
            "| coupling | T | method | precision | " + " | ".join(f"{e:g}" for e in eps_values) + " |",
            "|---|---|---|---|" + "---|" * len(eps_values)]
  for coupling in couplings:
    for steps in lengths:
      for method in nudged():
        for mode in modes:
          lines.append(f"| {coupling} | {steps} | {method} | {mode} | "
                       + " | ".join(f"{err.get((coupling, steps, mode, method, e), float('nan')):.1e}"
                                    for e in eps_values) + " |")
  norms = {(r["coupling"], r["T"]): r["bptt_norm"] for r in rows}
  lines += ["", "Norm of the float64 BPTT gradient: " + ", ".join(
      f"{c} T={t}: {v:.2e}" for (c, t), v in sorted(norms.items()))]
  checkpoints.atomic_write_text(out / "exact.md", "\n".join(lines) + "\n")
  fig, axes = plt.subplots(2 * len(couplings), len(lengths), figsize=(3.3 * len(lengths), 2.6 * 2 * len(couplings)),
                           squeeze=False, sharex=True)
  for i, (coupling, method) in enumerate((c, m) for c in couplings for m in nudged()):
    for j, steps in enumerate(lengths):
      ax = axes[i, j]
      for mode in modes:
        ax.loglog(eps_values, [err.get((coupling, steps, mode, method, e), float("nan")) for e in eps_values],
                  "o-", ms=3, label=mode)
      ax.set_title(f"{method}, {coupling}, T={steps}", fontsize=9)
      ax.grid(alpha=0.3, which="both")
      if j == 0:
        ax.set_ylabel("rel. error vs float64 BPTT")
      if i == 2 * len(couplings) - 1:
        ax.set_xlabel("eps")
  axes[0, 0].legend(fontsize=6)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, out / "exact.png", dpi=80)
  plt.close(fig)


def _memory_child(method: str, steps: int):
  import time
  from benchmarks.run import peak_rss_mb
  import jax
  import jax.numpy as jnp
  import rhel_jax
  from rhel_jax.losses import mse

  n, batch = 128, 64
  k_p, k_x, k_y = jax.random.split(jax.random.key(0), 3)
  params = rhel_jax.init_params(k_p, n_in=4, n_hidden=n, n_out=3, w_scale=0.3, in_scale=0.3)
  model = rhel_jax.ModelConfig(dt=0.2)
  inputs = jax.random.normal(k_x, (batch, steps, 4))
  targets = jax.random.normal(k_y, (batch, steps, 3))
  mask = jnp.ones((batch, steps))
  options = {"eps": 1e-2} if "eps" in rhel_jax.METHODS[method].option_names else {}
  compiled = rhel_jax.gradient_fn(method, model, loss=mse, **options).lower(params, inputs, targets, mask).compile()
  stats = compiled.memory_analysis()
  start = time.perf_counter()
  jax.block_until_ready(compiled(params, inputs, targets, mask))
  seconds = time.perf_counter() - start
  print(json.dumps({"part": "memory", "method": method, "T": steps, "N": n, "batch": batch,
                    "peak_rss_mb": peak_rss_mb(), "xla_temp_mb": stats.temp_size_in_bytes / 2**20,
                    "xla_args_mb": stats.argument_size_in_bytes / 2**20, "step_s": seconds}), flush=True)


def _memory():
  from rhel_jax.methods import nudged
  rows = {}
  for method in (*nudged(), "eprop", "bptt"):
    for steps in (400, 4000):
      out = subprocess.run([sys.executable, "-m", "benchmarks.core_check", "--child", method, str(steps)],
                           check=True, capture_output=True, text=True).stdout
      print(out.strip(), flush=True)
      rows[method, steps] = json.loads(out.strip().splitlines()[-1])
  for method in (*nudged(), "eprop", "bptt"):
    a, b = rows[method, 400], rows[method, 4000]
    print(json.dumps({"part": "memory_ratio", "method": method,
                      "peak_rss_ratio_4000_over_400": b["peak_rss_mb"] / a["peak_rss_mb"],
                      "xla_temp_growth_mb": b["xla_temp_mb"] - a["xla_temp_mb"]}), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--part", choices=("fidelity", "memory", "eps", "exact", "all"), default="all")
  parser.add_argument("--out", help="--part=exact: also write exact.jsonl, exact.md and exact.png here")
  parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    _memory_child(args.child[0], int(args.child[1]))
    return
  if args.part in ("fidelity", "all"):
    _fidelity()
  if args.part in ("memory", "all"):
    _memory()
  if args.part in ("eps", "all"):
    _eps_sweep()
  if args.part in ("exact", "all"):
    rows = _exact_sweep()
    if args.out:
      write_exact_report(rows, args.out)


if __name__ == "__main__":
  main()

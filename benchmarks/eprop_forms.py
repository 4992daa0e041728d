"""e-prop's two forms on the Copy-Paste full config: the same gradient, at what cost.

    python -m benchmarks.eprop_forms --out docs/results/cost/eprop_forms

``eprop(online=True)`` runs the exact eligibility traces forward (O(B N^2) state per step, the
rule as an online learner would run it); ``online=False`` gives the same gradient in reverse mode,
as ``jax.grad`` of the model with the recurrent input stop-gradiented. On one probe batch of the
full config (T = 400, N = 64, B = 64) at initialisation (validation root seed 1000), per dtype:
the relative error and cosine between the two forms per tensor, and the wall time of one jitted
gradient (median of ``--repeats`` after a warm-up call) beside BPTT's. Writes ``eprop_forms.md``
and ``eprop_forms.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checkpoints, copy_paste
from experiments.tasks import build_task
from experiments.trainer import MethodTrainer
from experiments.workdir import git_revision
from rhel_jax.alignment import cosine


def _timed(fn, *args, repeats: int) -> tuple[object, float]:
  out = jax.block_until_ready(fn(*args))  # compile + warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return out, float(np.median(times))


def measure(dtype: str, repeats: int) -> tuple[list[dict], dict]:
  config = copy_paste.get_config()
  config.model.dtype, config.num_seeds = dtype, 1
  task = build_task(config, jnp.dtype(dtype))
  trainer = MethodTrainer(config, task, "eprop", jnp.dtype(dtype))
  params = trainer._init(jax.random.key(1000))["params"]
  batch = task.probe_batch(jax.random.key(7))
  forms = {"online": ("eprop", {"online": True}), "reverse mode": ("eprop", {"online": False}),
           "bptt (for scale)": ("bptt", {})}
  grads, seconds = {}, {}
  for label, (method, options) in forms.items():
    fn = jax.jit(lambda p, b, m=method, o=options: trainer._grads(p, b, m, o)[1])
    grads[label], seconds[label] = _timed(fn, params, batch, repeats=repeats)
  rows = []
  for k in grads["online"]:
    a = np.asarray(grads["online"][k], np.float64)
    b = np.asarray(grads["reverse mode"][k], np.float64)
    rows.append({"dtype": dtype, "tensor": k, "rel_err": float(np.linalg.norm(a - b) / np.linalg.norm(a)),
                 "cosine": float(cosine(jnp.asarray(a), jnp.asarray(b)))})
  return rows, {"dtype": dtype, **{f"seconds {k}": v for k, v in seconds.items()}}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  jax.config.update("jax_enable_x64", True)
  rows, timings = [], []
  for dtype in ("float32", "float64"):
    r, t = measure(dtype, args.repeats)
    rows += r
    timings.append(t)
  lines = [f"e-prop online vs reverse mode, Copy-Paste full config (T=400, N=64, B=64), at init, "
           f"revision `{git_revision()}`, {jax.devices()[0].platform}", "",
           "| dtype | tensor | relative error | cosine |", "|---|---|---|---|"]
  lines += [f"| {r['dtype']} | {r['tensor']} | {r['rel_err']:.2e} | {r['cosine']:.12f} |" for r in rows]
  labels = [k for k in timings[0] if k.startswith("seconds ")]
  lines += ["", "Seconds per jitted gradient (median of %d):" % args.repeats, "",
            "| dtype | " + " | ".join(k.removeprefix("seconds ") for k in labels) + " |",
            "|---|" + "---|" * len(labels)]
  lines += [f"| {t['dtype']} | " + " | ".join(f"{t[k]:.3f}" for k in labels) + " |" for t in timings]
  print(checkpoints.write_report(args.out, "eprop_forms", lines, rows + timings))


if __name__ == "__main__":
  main()

"""Where a train step's time goes: each phase of rhel, rhel_centered and bptt timed on its own.

    python -m benchmarks.profile_step                 # N=128, batch 64, T=1000, float32
    python -m benchmarks.profile_step --n 256 --steps 400

The gradient estimators are built from a few scans; this times them one at a time (medians of
``--repeats`` runs, interleaved, after warm-up) and sets each against its count of B x N x N
matmuls per step, the operation that dominates at these sizes:

  one big matmul       1  (all T steps' B x N x N in one call: the machine's matmul ceiling)
  bare scan            1  (W rho)
  forward phase        1  (+ readout, n_out x N)
  forward + Hebbian    2  (+ rho^T rho)                   rhel's inference phase
  echo, one echo       2  (W rho, d^T s)                  rhel's echo
  echo, two echoes     3  (2 x W rho, d^T s)              rhel_centered's echo (plain sums, as that rule runs it)
  bptt                 3  (W rho forward; W g and rho^T g backward)

Prints one JSON line per variant, then a Markdown table (ms, matmuls/step, ms per matmul-step).
Each variant is timed by the wall clock and by the process's CPU time (``cpu_ms``: with XLA on one
thread, as ``XLA_FLAGS`` in docs/results.md sets it, this is the step's own compute, and other jobs
on a loaded machine barely move it). The ``us per matmul-step`` and GFLOP/s columns use ``cpu_ms``.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=int, default=128)
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  for name in ("n", "steps", "batch", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")

  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax
  import rhel_jax
  from experiments.tasks.copy_paste import CopyTask
  from rhel_jax.integrator import echo_phase, forward_phase, leapfrog_step, zero_state

  n, steps, batch = args.n, args.steps, args.batch
  x, y, m = CopyTask(seq_len=steps).sample(jax.random.key(1), batch)
  m = jnp.broadcast_to(m, (batch, steps))
  params = rhel_jax.init_params(jax.random.key(0), x.shape[-1], n, y.shape[-1], w_scale=0.3, in_scale=0.3)
  model = rhel_jax.ModelConfig(dt=0.5)
  xt = jnp.swapaxes(x, 0, 1)
  final, ys, _, _ = jax.jit(lambda p, x: forward_phase(p, model, x))(params, xt)
  dl_dy = jax.grad(lambda ys: rhel_jax.bce(jnp.swapaxes(ys, 0, 1), y, m))(ys)
  eps = jnp.float32(1e-3 * batch)

  big = jax.random.normal(jax.random.key(2), (steps * batch, n))
  # The centered rule's echo sums as rhel_centered runs them (revisions without the option: compensated).
  centered_sums = ({"compensated": rhel_jax.hebbian.echo_compensated(model, centered=True)}
                   if hasattr(rhel_jax.hebbian, "echo_compensated") else {})
  variants = {
      # The machine's ceiling: the same multiply-adds as one matmul-step per step, in one call.
      "one (T*B x N) @ (N x N) matmul": (1, lambda p: big @ p["W"]),
      "bare scan": (1, lambda p: lax.scan(lambda s, u: (leapfrog_step(p, model, s, u)[0], None),
                                          zero_state(batch, n, xt.dtype), xt)[0]),
      "forward phase": (1, lambda p: forward_phase(p, model, xt)[:2]),
      "forward + Hebbian": (2, lambda p: forward_phase(p, model, xt, accumulate_hebbian=True)),
      "echo, one echo": (2, lambda p: echo_phase(p, model, final, xt, dl_dy, jnp.stack([eps]), jnp.ones((1,)))),
      "echo, two echoes": (3, lambda p: echo_phase(p, model, final, xt, dl_dy, jnp.stack([eps, -eps]),
                                                   jnp.array([1.0, -1.0]), **centered_sums)),
      "rhel (total)": (4, lambda p: rhel_jax.METHODS["rhel"].bind(model, "bce", eps=1e-3)(p, x, y, m)),
      "rhel_centered (total)": (4, lambda p: rhel_jax.METHODS["rhel_centered"].bind(model, "bce", eps=1e-3)(p, x, y, m)),
      "bptt (total)": (3, lambda p: rhel_jax.METHODS["bptt"].bind(model, "bce")(p, x, y, m)),
  }
  runners = {name: jax.jit(fn) for name, (_, fn) in variants.items()}
  for fn in runners.values():
    jax.block_until_ready(fn(params))
    jax.block_until_ready(fn(params))
  samples = {name: [] for name in runners}
  cpu = {name: [] for name in runners}
  for _ in range(args.repeats):
    for name, fn in runners.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn(params))
      samples[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  rows = []
  for name, (matmuls, _) in variants.items():
    ms, cpu_ms = 1e3 * float(np.median(samples[name])), 1e3 * float(np.median(cpu[name]))
    row = {"variant": name, "T": steps, "N": n, "batch": batch, "ms": ms, "cpu_ms": cpu_ms,
           "matmuls_per_step": matmuls, "us_per_matmul_step": 1e3 * cpu_ms / (matmuls * steps),
           "gflops_matmul": 2 * batch * n * n * matmuls * steps / (cpu_ms * 1e-3) / 1e9,
           "load_avg": [round(x, 2) for x in os.getloadavg()]}
    rows.append(row)
    print(json.dumps(row), flush=True)
  print(f"\n| variant | ms (T={steps}, N={n}, batch {batch}) | CPU ms | BxNxN matmuls per step "
        "| us per matmul-step (CPU) | matmul GFLOP/s (CPU) |\n|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['variant']} | {r['ms']:.1f} | {r['cpu_ms']:.1f} | {r['matmuls_per_step']} "
          f"| {r['us_per_matmul_step']:.1f} | {r['gflops_matmul']:.1f} |")


if __name__ == "__main__":
  main()

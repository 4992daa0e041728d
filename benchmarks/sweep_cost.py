"""What a vmapped sweep costs against one run: one epoch's wall time with S settings x the seeds.

    python -m benchmarks.sweep_cost --out docs/results/cost/sweep_cpu.md
    python -m benchmarks.sweep_cost --settings 1,6,30 --config experiments/copy_paste.py:quick

Each size compiles once (not timed), then one epoch of the config's first method is timed
``--repeats`` times (the median is reported). The settings sweep ``train.lr`` over distinct values,
so the program is the one ``config.sweep`` builds. On a CPU the cost is expected to grow with the
replica count (the arithmetic does); on an accelerator, where a step of this small network is
latency-bound, it should stay near one run's until the device fills.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

import jax
import numpy as np

from experiments import checkpoints, sweep, table1, train
from experiments.workdir import git_revision


def time_epoch(config, method: str, repeats: int) -> float:
  """Median seconds of one jitted epoch of all replicas (after a compiling call)."""
  dtype = np.dtype(config.model.dtype)
  task = train.build_task(config, dtype)
  all_settings = sweep.settings(config)
  values = sweep.replica_values(all_settings, config.num_seeds, dtype)
  trainer = train.MethodTrainer(config, task, method, dtype, swept=tuple(values))
  keys = [jax.numpy.concatenate([k] * len(all_settings)) for k in train.seed_keys(config.seed, config.num_seeds)]
  state = trainer.init(keys[0])
  data = task.train_data()
  seq_len = task.train_seq_len(0)
  state, loss = trainer.epoch(state, keys[1], data, 0, seq_len, values)
  jax.block_until_ready(loss)
  times = []
  for epoch in range(1, repeats + 1):
    t0 = time.perf_counter()
    state, loss = trainer.epoch(state, keys[1], data, epoch, seq_len, values)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="experiments/copy_paste.py:quick")
  parser.add_argument("--method", default="bptt")
  parser.add_argument("--settings", type=lambda s: [int(x) for x in s.split(",")], default=[1, 6, 30])
  parser.add_argument("--steps_per_epoch", type=int, default=10, help="shorter epochs: the timing is per epoch")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", type=pathlib.Path)
  args = parser.parse_args()
  base = table1.load_config(args.config)
  load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
  rows = []
  for n in args.settings:
    lrs = tuple(float(f"{base.train.lr * (0.9 ** i):.6g}") for i in range(n))
    config = sweep.with_values(base, {"steps_per_epoch": args.steps_per_epoch, "num_epochs": 1000,
                                      "train.schedule": "constant", "train.warmup_steps": 0})
    config.sweep = {"train.lr": lrs} if n > 1 else {}
    seconds = time_epoch(config, args.method, args.repeats)
    rows.append((n, n * config.num_seeds, seconds))
    print(f"{n} setting(s) x {config.num_seeds} seeds: {seconds:.3f} s per epoch", flush=True)
  one = rows[0][2]
  lines = [f"# Sweep cost: {args.config}, {args.method}", "",
           f"- command: `python -m benchmarks.sweep_cost --config {args.config} --method {args.method} "
           f"--settings {','.join(map(str, args.settings))} --steps_per_epoch {args.steps_per_epoch}"
           + (f" --out {args.out}`" if args.out else "`"),
           f"- git revision: `{git_revision()}`; backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), "
           f"{len(jax.devices())} device(s); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; CPU affinity "
           f"{sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}; load average before "
           f"{load_before}", "",
           "| settings | replicas | s per epoch | x one setting | per replica, x one setting's |", "|---|---|---|---|---|"]
  for n, replicas, seconds in rows:
    lines.append(f"| {n} | {replicas} | {seconds:.3f} | {seconds / one:.2f} | {seconds / one / n:.2f} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoints.atomic_write_text(args.out, text)


if __name__ == "__main__":
  main()

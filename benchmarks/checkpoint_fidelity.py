"""Gradient fidelity on a *trained* network: each RHEL setting against BPTT, from a run's checkpoint.

    python -m benchmarks.checkpoint_fidelity runs/probes/p03_spectral_seed1001/bptt --out docs/results/copy_paste_recipe/checkpoint_fidelity_p03.md

Loads the newest checkpoint of a Copy-Paste run's method directory (seed ``--seed`` of the sweep),
draws a probe batch of 64 sequences, and compares one-sided and centered RHEL, in float32 and in
exact mode, at several eps, with BPTT on that batch: cosine and relative error over the
Hamiltonian parameters (W, b, B; the readout's gradient is exact in every method). Trained
networks read small states through a large readout, so the nudge that suits a network at init
may be far too large for the trained one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import rhel_jax
from experiments import checkpoints
from experiments.tasks.copy_paste import CopyTask
from rhel_jax.alignment import agreement

SETTINGS = (("rhel", 1e-2, False), ("rhel", 1e-3, False), ("rhel", 1e-4, False), ("rhel_centered", 1e-3, False),
            ("rhel", 1e-4, True), ("rhel", 1e-5, True), ("rhel_centered", 1e-5, True))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("method_dir", type=pathlib.Path, help="a run's <workdir>/<method> directory")
  parser.add_argument("--seed", type=int, default=0, help="index of the seed in the sweep")
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  try:
    epoch, raw = checkpoints.restore_params(args.method_dir)
  except FileNotFoundError as e:
    raise SystemExit(str(e)) from e
  config = json.loads((args.method_dir.parent / "config.json").read_text())
  m, t = config["model"], config["task"]
  params = {k: jnp.asarray(v[args.seed]) for k, v in raw.items()}
  model = rhel_jax.ModelConfig(alpha=m["alpha"], beta=m["beta"], dt=m["dt"], rho=m["rho"])
  task = CopyTask(num_bits=t["num_bits"], pattern_length=t["pattern_length"], steps_per_symbol=t["steps_per_symbol"],
                  marker_steps=t["marker_steps"], seq_len=t["seq_len"])
  inputs, targets, mask = task.sample(jax.random.key(7), 64)
  mask = jnp.broadcast_to(mask, (64, task.seq_len))
  flat = lambda g: np.concatenate([np.ravel(np.asarray(g[k], np.float64)) for k in ("W", "b", "B")])
  _, ref = rhel_jax.gradient("bptt", params, model, inputs, targets, mask, loss="bce")
  ref = flat(ref)
  lines = [f"Checkpoint of epoch {epoch} in `{args.method_dir}` (seed {args.seed}), probe batch of 64, float32; "
           f"Hamiltonian parameters (W, b, B), |BPTT grad| = {np.linalg.norm(ref):.3g}.", "",
           "| method | eps | mode | cosine with BPTT | relative error |", "|---|---|---|---|---|"]
  for method, eps, exact in SETTINGS:
    _, grads = rhel_jax.gradient(method, params, dataclasses.replace(model, exact_reversible=exact), inputs, targets,
                                 mask, loss="bce", eps=eps)
    both = agreement(flat(grads), ref)
    lines.append(f"| {method} | {eps:g} | {'exact' if exact else 'float32'} | {both['cos']:.6f} | {both['relerr']:.2e} |")
  text = "\n".join(lines) + "\n"
  checkpoints.atomic_write_text(args.out, text)
  print(text)


if __name__ == "__main__":
  main()

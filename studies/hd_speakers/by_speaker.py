"""Test accuracy of finished Heidelberg Digits runs, per speaker of the test split.

    python -m studies.hd_speakers.by_speaker runs/hd_dev_v4_a runs/hd_dev_v4_b --out docs/results/table1_heidelberg_digits/dev_by_speaker

HD's test split mixes the test-only speakers (the speaker-held-out part: HD's 4 and 5, the dev
corpus's 03) with ~5 % of every training speaker's recordings. This evaluates each method's final
checkpoint on each test speaker apart, mean ± std over the seeds that did not diverge, and on the
held-out speakers together. Writes ``by_speaker.md`` and ``by_speaker.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import checkpoints
from experiments.summary import mean_std
from experiments.tasks import build_task
from experiments.trainer import MethodTrainer, seed_keys
from experiments.workdir import git_revision, with_added_fields


def evaluate_by_speaker(workdir: pathlib.Path) -> list[dict]:
  """One row per (method, speaker group) of a finished HD workdir."""
  config = ml_collections.ConfigDict(with_added_fields(json.loads((workdir / "config.json").read_text())))
  if config.task.name != "heidelberg_digits":
    raise ValueError(f"{workdir}: a {config.task.name} run, not heidelberg_digits")
  dtype = jnp.dtype(config.model.dtype)
  task = build_task(config, dtype)
  test, speakers = task.test, task.speakers[task.eval_split]
  train_speakers = set(task.speakers["train"].tolist())
  groups = {f"speaker {s:02d}" + ("" if s in train_speakers else " (held out)"): speakers == s
            for s in sorted(set(speakers.tolist()))}
  held_out = ~np.isin(speakers, sorted(train_speakers))
  if len(set(speakers[held_out].tolist())) > 1:  # HD's 4 and 5 together
    groups["all held-out speakers"] = held_out
  groups["whole test split"] = np.ones(len(speakers), bool)
  rows = []
  for method in config.methods:
    directory = workdir / method
    if not (directory / "final.json").exists():
      continue
    trainer = MethodTrainer(config, task, method, dtype)
    init_keys = seed_keys(config.seed, config.num_seeds)[0]
    epoch, state = checkpoints.restore_latest(directory, trainer.init(init_keys))
    if epoch != config.num_epochs:
      raise ValueError(f"{directory}: newest checkpoint is epoch {epoch}, the run has {config.num_epochs}")
    ok = ~np.asarray(state["diverged"], bool)
    for name, select in groups.items():
      subset = tuple(x[jnp.asarray(select)] for x in test)  # (inputs, labels, mask), on the device
      stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (config.num_seeds,) + x.shape), subset)
      acc = np.asarray(trainer.evaluate(state["params"], stacked)["accuracy"])
      mean, std = mean_std(acc[ok])
      rows.append({"workdir": str(workdir), "method": method, "group": name, "examples": int(select.sum()),
                   "accuracy": acc.tolist(), "mean": mean, "std": std})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  rows = [r for w in args.workdirs for r in evaluate_by_speaker(w)]
  groups = list(dict.fromkeys(r["group"] for r in rows))
  sizes = {r["group"]: r["examples"] for r in rows}
  lines = [f"Final-checkpoint test accuracy (%) per test speaker, mean ± std over seeds (revision `{git_revision()}`; "
           f"runs: {', '.join(f'`{w}`' for w in args.workdirs)}):", "",
           "| method | " + " | ".join(f"{g} (n={sizes[g]})" for g in groups) + " |", "|---|" + "---|" * len(groups)]
  for method in dict.fromkeys(r["method"] for r in rows):
    cells = {r["group"]: f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}" for r in rows if r["method"] == method}
    lines.append(f"| {method} | " + " | ".join(cells.get(g, "-") for g in groups) + " |")
  print(checkpoints.write_report(args.out, "by_speaker", lines, rows))


if __name__ == "__main__":
  main()

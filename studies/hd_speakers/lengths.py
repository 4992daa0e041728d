"""Utterance length per speaker of the HD dev corpus, with and without silence trimming.

    RHEL_JAX_SHARED=/path/to/shared python -m studies.hd_speakers.lengths --trim_db 0,30 --out studies/hd_speakers/results/lengths

The Hamiltonian network is conservative: nothing damps it, so the input during the silence before
a word keeps moving its state, and the state at the word's start depends on how long that lasted.
This counts the valid steps (after ``time_downsample``) of
each utterance of the ``dev`` variant's splits, per speaker, for each ``data.trim_db`` asked for
(0 = untrimmed), so that the speakers' silence can be compared, and the input the network gets at
the first step: the mean over the static log-mel bands (standardised, as the model sees them).
Builds (or reads) the TFDS features like a run does. Writes ``lengths.md`` and ``lengths.jsonl``.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np

from experiments import checkpoints, hd_data, heidelberg_digits
from experiments.workdir import git_revision
from studies.hd_speakers import cli


def lengths(trim_db: float) -> list[dict]:
  """One row per (split, speaker): valid steps per utterance (mean, std, max) and the mean static
  band value at the first step, under ``trim_db``."""
  config = heidelberg_digits.get_config("dev")
  config.data.trim_db = trim_db
  arrays = hd_data.load(config.data)
  rows = []
  for split in ("train", "test"):
    steps, speakers = arrays[split].mask.sum(1), arrays[split].speakers
    first = arrays[split].inputs[:, 0, :config.data.n_mels].mean(-1)  # (n,): the statics lead each step
    for s in sorted(set(speakers.tolist())):
      n = steps[speakers == s]
      rows.append({"trim_db": trim_db, "split": split, "speaker": int(s), "count": int(n.size),
                   "mean": float(n.mean()), "std": float(n.std()), "max": int(n.max()),
                   "first_step_input": float(first[speakers == s].mean())})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--trim_db", type=cli.comma_list(float, "numbers >= 0"), default=(0.0, 30.0),
                      help="comma-separated data.trim_db values (0 = untrimmed)")
  args = parser.parse_args()
  cli.dev_corpus()  # exits with a message when there is none
  trims = args.trim_db
  if min(trims) < 0:
    parser.error(f"--trim_db: comma-separated numbers >= 0, got {','.join(map(str, trims))!r}")
  rows = [row for t in trims for row in lengths(t)]
  data = heidelberg_digits.get_config("dev").data
  speakers = sorted({r["speaker"] for r in rows})
  lines = [f"Valid steps per utterance ({data.hop_ms * data.time_downsample:g} ms each) of the `dev` variant's "
           f"splits, per speaker, mean ± std (max); in brackets the mean standardised static band at the first "
           f"step (revision `{git_revision()}`):", "",
           "| trim_db | split | " + " | ".join(f"speaker {s:02d}" for s in speakers) + " |",
           "|---|---|" + "---|" * len(speakers)]
  for t in trims:
    for split in ("train", "test"):
      cells = {r["speaker"]: f"{r['mean']:.1f} ± {r['std']:.1f} ({r['max']}) [{r['first_step_input']:+.2f}]"
               for r in rows if r["trim_db"] == t and r["split"] == split}
      lines.append(f"| {t:g} | {split} | " + " | ".join(cells.get(s, "-") for s in speakers) + " |")
  print(checkpoints.write_report(args.out, "lengths", lines, rows))


if __name__ == "__main__":
  main()

"""A linear reference for the HD dev corpus's leave-one-speaker-out folds, per feature set.

    RHEL_JAX_SHARED=/path/to/shared python -m studies.hd_speakers.linear_folds --out studies/hd_speakers/results/linear_folds

How hard is generalising from two speakers to a third, whatever the recurrent network? For each
feature set, each fold holds one of the training speakers 00-02 out (the test speaker 03 is never
read), and an L2-regularised logistic regression (scikit-learn, which librosa already needs;
C = 0.1) is fitted on fixed-length summaries of each utterance: 8 evenly spaced frames plus the
mean and std of every band over time. Writes ``linear_folds.md`` (validation accuracy per fold
and the mean) and ``linear_folds.jsonl``.
"""
from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np

from data import hd_loader
from data.heidelberg_digits import build
from experiments import checkpoints, heidelberg_digits
from experiments.workdir import git_revision
from studies.hd_speakers import cli

FEATURE_SETS = {  # name -> HDConfig options on top of the dev config's features
    "plain log-mels": {},
    "cmvn mean": {"cmvn": "mean"},
    "cmvn meanvar": {"cmvn": "meanvar"},
    "cmvn meanvar, f_max 4 kHz": {"cmvn": "meanvar", "f_max": 4000.0},
    "f_max 4 kHz": {"f_max": 4000.0},
}


def summary_features(arrays: hd_loader.HDArrays, frames: int = 8) -> np.ndarray:
  """(n, frames * F + 2 F): ``frames`` evenly spaced valid frames, then the per-band mean and std."""
  lengths = arrays.mask.sum(1).astype(int)
  out = []
  for x, n in zip(arrays.inputs, lengths):
    seq = x[:n]
    idx = np.linspace(0, n - 1, frames).round().astype(int)
    out.append(np.concatenate([seq[idx].ravel(), seq.mean(0), seq.std(0)]))
  return np.asarray(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--data_dir", default="~/tensorflow_datasets/rhel_jax/hd_linear_folds")
  args = parser.parse_args()
  from sklearn.linear_model import LogisticRegression
  from threadpoolctl import threadpool_limits  # a scikit-learn dependency
  source = str(cli.dev_corpus())
  data = heidelberg_digits.get_config("dev").data
  base = dict(sample_rate=data.sample_rate, n_mels=data.n_mels, win_ms=data.win_ms, hop_ms=data.hop_ms,
              time_downsample=data.time_downsample, num_validation_speakers=0)
  rows = []
  for name, options in FEATURE_SETS.items():
    builder = build(os.path.expanduser(args.data_dir), source, **base, **options)
    for speaker in (0, 1, 2):
      fold = hd_loader.load_splits(builder, validation_speakers=(speaker,))
      # One BLAS thread: lbfgs's result depends on the thread count in the last digits of accuracy.
      with threadpool_limits(1):
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(summary_features(fold["train"]), fold["train"].labels)
      acc = float(clf.score(summary_features(fold["validation"]), fold["validation"].labels))
      rows.append({"features": name, "validation_speaker": speaker, "accuracy": acc})
      print(rows[-1], flush=True)
  lines = [f"Logistic regression on utterance summaries, leave-one-speaker-out over the dev corpus's training "
           f"speakers 00-02 (revision `{git_revision()}`):", "",
           "| features | speaker 00 | speaker 01 | speaker 02 | mean |", "|---|---|---|---|---|"]
  for name in FEATURE_SETS:
    accs = [r["accuracy"] for r in rows if r["features"] == name]
    lines.append(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + f" | {100 * np.mean(accs):.1f} |")
  print(checkpoints.write_report(args.out, "linear_folds", lines, rows))


if __name__ == "__main__":
  main()

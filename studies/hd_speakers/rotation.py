"""Each speaker of an HD-layout corpus held out in turn: what the `dev` config gives on a new voice.

    RHEL_JAX_SHARED=/path/to/shared python -m studies.hd_speakers.rotation --runs runs/hd_speaker_rotation_v4 \
        --out docs/results/hd_held_out_speakers/hamiltonian_bptt

The dev protocol scores one unseen speaker (03), and a single voice says little about the next
one. This measures the frozen `dev` config (nothing is chosen here) with every speaker of the
corpus held out in turn: for held-out speaker k it writes a corpus in HD's layout whose
``test_filenames.txt`` is all of k's recordings and whose ``train_filenames.txt`` is everyone
else's (the audio is a symlink to the source's), trains ``python -m experiments.main
--config=experiments/heidelberg_digits.py:dev`` on it, and reads each seed's final accuracy on
k. Held-out 03 is the dev protocol's test speaker without the 5 % of the other speakers'
recordings that the protocol keeps for its test split (they train here).

Runs go to ``--runs/held_out_<k>`` and resume like any run (a finished one is read, not rerun).
Writes ``rotation.md`` (mean ± std over seeds per held-out speaker, and the mean over speakers)
and ``rotation.jsonl`` (one row per speaker, method and seed).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from data import heidelberg_digits as hd
from experiments import checkpoints
from experiments.workdir import git_revision
from studies.hd_speakers import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def rotated_corpus(source: pathlib.Path, held_out: int, out: pathlib.Path) -> pathlib.Path:
  """``out`` in HD's layout: speaker ``held_out``'s recordings test, every other one trains."""
  names = [n for lst in ("train_filenames.txt", "test_filenames.txt")
           for n in hd.read_filename_list(source, lst)]
  test = sorted(n for n in names if hd.parse_name(n)["speaker"] == held_out)
  train = sorted(n for n in names if hd.parse_name(n)["speaker"] != held_out)
  if not test:
    raise SystemExit(f"{source}: no recordings of speaker {held_out:02d}")
  out.mkdir(parents=True, exist_ok=True)
  audio = out / "audio"
  if not audio.exists():
    audio.symlink_to((source / "audio").resolve(), target_is_directory=True)
  for name, files in (("train_filenames.txt", train), ("test_filenames.txt", test)):
    checkpoints.atomic_write_text(out / name, "\n".join(files) + "\n")
  return out


def train(corpus: pathlib.Path, workdir: pathlib.Path, methods: list[str], num_seeds: int, seed: int) -> None:
  command = [sys.executable, "-m", "experiments.main", "--config=experiments/heidelberg_digits.py:dev",
             f"--config.data.manual_dir={corpus}", f"--config.data.data_dir={workdir / 'tfds'}",
             f"--config.num_seeds={num_seeds}", f"--config.seed={seed}",
             f"--config.methods=({','.join(repr(m) for m in methods)},)", f"--workdir={workdir}"]
  print(" ".join(command), flush=True)
  subprocess.run(command, check=True, cwd=ROOT)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--corpus", default=None,
                      help="a corpus in HD's layout (default: the dev corpus under $RHEL_JAX_SHARED)")
  parser.add_argument("--runs", type=pathlib.Path, default=pathlib.Path("runs/hd_speaker_rotation"))
  parser.add_argument("--speakers", type=cli.comma_list(int, "speaker numbers"), default=(0, 1, 2, 3),
                      help="speakers to hold out, one run each")
  parser.add_argument("--methods", default="bptt")
  parser.add_argument("--num_seeds", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  corpus, speakers = cli.dev_corpus(args.corpus, flag="--corpus"), args.speakers
  methods = [m for m in args.methods.split(",") if m]
  rows = []
  for k in speakers:
    workdir = (args.runs / f"held_out_{k:02d}").resolve()
    if not all((workdir / m / "final.json").exists() for m in methods):
      train(rotated_corpus(corpus.resolve(), k, workdir / "corpus"), workdir, methods, args.num_seeds, args.seed)
    for m in methods:
      final = json.loads((workdir / m / "final.json").read_text())
      for s, acc in enumerate(final["test_accuracy"]):
        rows.append({"held_out": k, "method": m, "seed": s, "accuracy": float(acc)})
  lines = [f"The `dev` config with each speaker held out in turn (all of its recordings test, everyone else "
           f"trains), {args.num_seeds} seeds of root {args.seed}, final epoch (revision `{git_revision()}`):", "",
           "| method | " + " | ".join(f"held-out {k:02d}" for k in speakers) + " | mean over speakers |",
           "|---|" + "---|" * (len(speakers) + 1)]
  for m in methods:
    per = [[r["accuracy"] for r in rows if r["method"] == m and r["held_out"] == k] for k in speakers]
    lines.append(f"| {m} | " + " | ".join(cli.percent_row(per)) + " |")
  print(checkpoints.write_report(args.out, "rotation", lines, rows))


if __name__ == "__main__":
  main()

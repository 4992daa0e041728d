"""One table of held-out-speaker accuracies from several speaker-rotation measurements.

    python -m studies.hd_speakers.rotation_table \\
        --row "Hamiltonian, dev config=docs/results/hd_held_out_speakers/hamiltonian_bptt" \\
        --row "GRU, dev recipe=docs/results/hd_held_out_speakers/gru" --out DIR

Each ``--row LABEL=DIR`` reads either a ``studies.hd_speakers.rotation`` output (``DIR/rotation.jsonl``,
one table row per method in it) or the ``studies.hd_speakers.gru_folds --protocol`` outputs of a rotation
(``DIR/held_out_<k>/*_protocol.jsonl``, one per held-out speaker ``k``). Writes ``rotation_table.md``
(mean ± std over seeds per held-out speaker, and the mean over speakers) and ``rotation_table.jsonl``
(one row per table row, speaker and seed).
"""
from __future__ import annotations

import argparse
import pathlib

from experiments import checkpoints
from experiments.workdir import git_revision
from studies.hd_speakers import cli


def read_rotation(directory: pathlib.Path) -> dict[str, dict[int, list[float]]]:
  """``{method or '': {held-out speaker: [accuracy per seed]}}`` from either kind of output."""
  found: dict[str, dict[int, list[float]]] = {}
  rotation = directory / "rotation.jsonl"
  if rotation.exists():
    for r in checkpoints.read_jsonl(rotation):
      found.setdefault(r["method"], {}).setdefault(int(r["held_out"]), []).append(float(r["accuracy"]))
    return found
  for sub in sorted(directory.glob("held_out_*")):
    files = sorted(sub.glob("*_protocol.jsonl"))
    if len(files) != 1:
      raise SystemExit(f"{sub}: expected one *_protocol.jsonl, found {len(files)}")
    speaker = int(sub.name.removeprefix("held_out_"))
    found.setdefault("", {})[speaker] = [float(r["held_out_accuracy"]) for r in checkpoints.read_jsonl(files[0])]
  if not found:
    raise SystemExit(f"{directory}: neither rotation.jsonl nor held_out_*/*_protocol.jsonl")
  return found


def row_spec(text: str) -> tuple[str, pathlib.Path]:
  label, sep, path = text.rpartition("=")
  if not sep or not label:
    raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {text!r}")
  return label, pathlib.Path(path)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--row", type=row_spec, action="append", required=True, metavar="LABEL=DIR")
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  table = []  # (label, {speaker: accuracies}, source)
  for label, directory in args.row:
    for method, per in read_rotation(directory).items():
      table.append((f"{label} ({method})" if method else label, per, directory))
  speakers = sorted({k for _, per, _ in table for k in per})
  lines = [f"Accuracy on each held-out speaker (mean ± std over seeds), final epoch (revision `{git_revision()}`):", "",
           "| network | " + " | ".join(f"held-out {k:02d}" for k in speakers) + " | mean over speakers | source |",
           "|---|" + "---|" * (len(speakers) + 2)]
  rows = []
  for label, per, source in table:
    missing = [k for k in speakers if k not in per]
    if missing:
      raise SystemExit(f"{source}: no results for held-out speaker(s) {missing}")
    lines.append(f"| {label} | " + " | ".join(cli.percent_row([per[k] for k in speakers])) + f" | `{source}` |")
    rows += [{"network": label, "held_out": k, "seed": s, "accuracy": a}
             for k in speakers for s, a in enumerate(per[k])]
  print(checkpoints.write_report(args.out, "rotation_table", lines, rows))


if __name__ == "__main__":
  main()

"""The summary of a ``benchmarks/gpu_check.sh`` run: issue 26's targets against what was measured.

    python -m benchmarks.gpu_check_summary --out DIR [--copy-paste WORKDIR]

Reads ``DIR/bench.jsonl`` (``benchmarks.run``) and, if given, a Copy-Paste workdir (each method's
``timing.jsonl``, and ``results.md`` when the run finished). Writes ``DIR/copy_paste.md`` (the run's
results, each method's epoch times, and the full protocol's time projected from them: the first
epoch, which compiles, plus the median later epoch for each remaining epoch) and prints the targets
table in Markdown. Every number comes from those files.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics

# Issue 26's targets, measured at T=1000, N=64, batch 64, float32.
T_TARGET, N_TARGET = 1000, 64
RATIO_TARGET = 0.5          # RHEL step / BPTT step
FORWARD_US_TARGET = 2.0     # fused forward kernel, per time step
PROTOCOL_S_TARGET = 600.0   # the full Copy-Paste protocol


def _read_jsonl(path: pathlib.Path) -> list[dict]:
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def protocol_projection(workdir: pathlib.Path, full_epochs: int) -> tuple[list[dict], float | None]:
  """Per method ``{method, epochs, first_s, later_s, projected_s}`` and the projected total (None if
  some method has fewer than two epochs, the least a projection needs)."""
  rows = []
  for timing in sorted(workdir.glob("*/timing.jsonl")):
    seconds = [r["seconds"] for r in sorted(_read_jsonl(timing), key=lambda r: r["epoch"])]
    later = statistics.median(seconds[1:]) if len(seconds) > 1 else None
    rows.append({"method": timing.parent.name, "epochs": len(seconds), "first_s": seconds[0] if seconds else None,
                 "later_s": later, "projected_s": None if later is None else seconds[0] + (full_epochs - 1) * later})
  total = sum(r["projected_s"] for r in rows) if rows and all(r["projected_s"] is not None for r in rows) else None
  return rows, total


def copy_paste_report(workdir: pathlib.Path, full_epochs: int) -> tuple[str, float | None]:
  rows, total = protocol_projection(workdir, full_epochs)
  results = workdir / "results.md"
  lines = ["# Copy-Paste, full config, a few epochs (benchmarks/gpu_check.sh)", ""]
  lines += ([results.read_text(), ""] if results.is_file()
            else ["The run did not finish (no results.md); the epochs it ran are timed below.", ""])
  lines += [f"Epoch times and the {full_epochs}-epoch protocol projected from them (first epoch, which compiles, "
            f"plus {full_epochs - 1} x the median later epoch):", "",
            "| method | epochs run | first epoch (s) | later epochs, median (s) | projected protocol (s) |",
            "|---|---|---|---|---|"]
  fmt = lambda v: "-" if v is None else f"{v:.1f}"
  for r in rows:
    lines.append(f"| {r['method']} | {r['epochs']} | {fmt(r['first_s'])} | {fmt(r['later_s'])} | {fmt(r['projected_s'])} |")
  lines += ["", f"Projected protocol, all methods one after the other: {fmt(total)} s"]
  return "\n".join(lines) + "\n", total


def targets_table(bench_rows: list[dict], protocol_s: float | None) -> str:
  times = {r["method"]: r["step_ms"] for r in bench_rows
           if r.get("T") == T_TARGET and r.get("N") == N_TARGET and r.get("step_ms") is not None}
  bptt = times.get("bptt")
  lines = [f"| target (T={T_TARGET}, N={N_TARGET}, batch 64, float32) | measured | met |", "|---|---|---|"]

  def row(label, value, limit, unit=""):
    if value is None:
      lines.append(f"| {label} | not measured | - |")
    else:
      lines.append(f"| {label} | {value:.2f}{unit} | {'yes' if value <= limit else 'no'} |")

  for method in ("rhel", "rhel_centered", "rhel+exact", "rhel+pallas", "rhel_centered+pallas", "rhel+exact+pallas"):
    ratio = times[method] / bptt if bptt and method in times else None
    row(f"{method} step / bptt step <= {RATIO_TARGET}", ratio, RATIO_TARGET)
  forward = times.get("forward:pallas")
  row(f"fused forward kernel per time step <= {FORWARD_US_TARGET} us",
      None if forward is None else 1e3 * forward / T_TARGET, FORWARD_US_TARGET, " us")
  row(f"full Copy-Paste protocol, projected <= {PROTOCOL_S_TARGET:.0f} s", protocol_s, PROTOCOL_S_TARGET, " s")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True, help="the gpu_check results folder")
  parser.add_argument("--copy-paste", type=pathlib.Path, help="the Copy-Paste run's workdir")
  args = parser.parse_args()
  protocol_s = None
  if args.copy_paste is not None and args.copy_paste.is_dir():
    from experiments import copy_paste
    from experiments.checkpoints import atomic_write_text
    report, protocol_s = copy_paste_report(args.copy_paste, copy_paste.get_config().num_epochs)
    atomic_write_text(args.out / "copy_paste.md", report)
  print(targets_table(_read_jsonl(args.out / "bench.jsonl"), protocol_s), end="")


if __name__ == "__main__":
  main()

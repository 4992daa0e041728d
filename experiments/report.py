"""Table 1 and Figure 1 of the paper from run workdirs.

    python -m experiments.report runs/<run> [runs/<other run> ...] --out DIR

Several workdirs of one config (its methods split over processes) are merged. Runs of one task
under different configs (e.g. two variants of one experiment) get a column each, labelled with
the config's name. Everything task-specific (the primary metric, the paper's entry per method,
a per-step metric's table) comes from the :class:`experiments.tasks.Task` interface.

Writes ``table1.md`` and ``table1.csv`` (final test accuracy, mean ± std over the seeds that did
not diverge; methods x tasks) and ``figure1.png`` (cosine of each method's gradient with BPTT's
at the alignment epochs, mean ± s.e.m. over seeds, one panel per task, log-scaled distance from 1
so that 0.9 and 0.99999 are both readable) and ``alignment_by_tensor.md`` (the cosine per
parameter tensor, which shows where an approximate method loses the gradient).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import pathlib

import numpy as np

from experiments import checkpoints, plots, tasks
from experiments.summary import mean_std, per_step_lines
from experiments.workdir import option_keys, with_added_fields
from rhel_jax.methods import METHODS


def _primary(task: str) -> str:
  """The ``final.json`` key of the task's primary metric (from the task registry)."""
  return f"test_{tasks.get(task).primary_metric}"


def load_run(workdir: pathlib.Path) -> dict:
  """Config, final per-seed metrics and alignment rows of one workdir."""
  workdir = pathlib.Path(workdir)
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise ValueError(f"{workdir}: not a run directory (no config.json)")
  config = json.loads(config_path.read_text())
  # label: the column heading (merge_runs uses the config's name where one task has several configs).
  run = {"workdir": workdir, "config": config, "task": config["task"]["name"], "label": config["task"]["name"],
         "methods": {}}
  run["in_progress"] = {}
  for method in config["methods"]:
    final_path = workdir / method / "final.json"
    if not final_path.exists():
      # Unfinished: its newest epoch is reported as such (alignment and Table 1 leave it out).
      rows = checkpoints.read_jsonl(workdir / method / "metrics.jsonl")
      if rows:
        last = max(r["epoch"] for r in rows)
        run["in_progress"][method] = {"epoch": last, "rows": [r for r in rows if r["epoch"] == last]}
      continue
    try:
      final = json.loads(final_path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"{final_path}: not valid JSON ({e})") from e
    run["methods"][method] = {"final": final,
                              "alignment": checkpoints.read_jsonl(workdir / method / "alignment.jsonl"),
                              "wall_seconds": checkpoints.wall_seconds(workdir / method)}
  return run


def _comparable(config: dict, methods: set) -> dict:
  """The config fields that must agree between parts of one run that both train ``methods``."""
  c = with_added_fields(config)
  c.pop("methods")
  keys = option_keys(methods)
  c["method"] = {k: v for k, v in c.get("method", {}).items() if k in keys}
  return c


def merge_runs(runs: list[dict]) -> list[dict]:
  """Runs of one config (``config.name``; e.g. the methods split over two processes, one per core)
  become one, labelled (``run['label']``) with the task's name, or with the config's name where
  runs of one task under several configs are compared.

  Their configs must agree on everything but ``methods`` and the options of methods that only
  one of the two trains (``config.method.eprop_online`` changes nothing for BPTT); fields newer
  than a run count at the value that reproduces it. A method in two runs is an error.
  """
  merged: dict[str, dict] = {}
  for run in runs:
    key = (run["task"], run["config"].get("name", run["task"]))
    base = merged.get(key)
    if base is None:
      merged[key] = {**run, "workdirs": [run["workdir"]], "methods": dict(run["methods"]),
                             "in_progress": dict(run["in_progress"]), "config": dict(run["config"])}
      continue
    both = set(base["methods"]) | set(base["in_progress"])
    both &= set(run["methods"]) | set(run["in_progress"])
    if _comparable(base["config"], both) != _comparable(run["config"], both):
      raise ValueError(f"{run['workdir']} and {base['workdir']} ran {run['task']} with different configs "
                       "(only config.methods and the options of methods in one of them may differ "
                       "between the parts of one run)")
    twice = sorted(set(base["methods"]) & set(run["methods"]))
    if twice:
      raise ValueError(f"method(s) {twice} appear in both {base['workdir']} and {run['workdir']}")
    base["methods"].update(run["methods"])
    base["in_progress"].update(run["in_progress"])
    base["config"]["methods"] = list(base["config"]["methods"]) + list(run["config"]["methods"])
    base["workdirs"].append(run["workdir"])
  for (task, name), run in merged.items():
    run["workdir"] = " + ".join(str(w) for w in run["workdirs"])
    run["label"] = task if sum(t == task for t, _ in merged) == 1 else name
  return list(merged.values())


def table1(runs: list[dict]) -> tuple[str, str]:
  """Markdown and CSV of final accuracy per (method, task)."""
  labels = [r["label"] for r in runs]
  order = list(METHODS)  # registration order: Table 1's rows, then any others
  methods = sorted(dict.fromkeys(m for r in runs for m in r["config"]["methods"]),
                   key=lambda m: (order.index(m) if m in order else len(order), m))
  cells, walls, out = {}, {}, io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["method", "task", "workdir", "mean_pct", "std_pct", "seeds", "diverged_seeds", "epochs",
                   "wall_seconds", "config_name"])
  for r in runs:
    for method, data in r.get("in_progress", {}).items():
      values = [row[_primary(r["task"])] for row in data["rows"] if not row.get("diverged")]
      mean, std = mean_std(values)
      cells[method, r["label"]] = (f"in progress: epoch {data['epoch'] + 1}/{r['config']['num_epochs']}, "
                                  f"{100 * mean:.2f} ± {100 * std:.2f}")
    for method, data in r["methods"].items():
      ok = ~np.asarray(data["final"]["diverged"], bool)
      mean, std = mean_std(np.asarray(data["final"][_primary(r["task"])])[ok])
      cells[method, r["label"]] = (f"{100 * mean:.2f} ± {100 * std:.2f}"
                                   + ("" if ok.all() else f" ({(~ok).sum()} div.)"))
      writer.writerow([method, r["task"], str(r["workdir"]), f"{100 * mean:.4f}", f"{100 * std:.4f}", int(ok.sum()),
                       np.flatnonzero(~ok).tolist(), r["config"]["num_epochs"], f"{data['wall_seconds']:.0f}",
                       r["config"].get("name", "")])
      walls[method, r["label"]] = data["wall_seconds"]
  head = "| method | " + " | ".join(f"{t} (ours) | {t} (paper) | {t} wall time" for t in labels) + " |"
  lines = [head, "|---|" + "---|---|---|" * len(labels)]
  for method in methods:
    row = [f"{cells.get((method, r['label']), 'not started')} | "
           f"{tasks.get(r['task']).paper_table1.get(method, '-')} | "
           f"{_fmt_hours(walls.get((method, r['label']), math.nan))}" for r in runs]
    lines.append(f"| {method} | " + " | ".join(row) + " |")
  described = dict.fromkeys(tasks.get(r["task"]).primary_description for r in runs)
  lines += ["", "Mean ± std over seeds of the final test accuracy (%): " + ", ".join(d for d in described if d)
            + ". `readout` trains only the readout of the "
            "untrained network (the memory floor; not in the paper). Wall time: the method's training, all "
            "seeds at once, one CPU core unless the run says otherwise. Runs: " +
            ", ".join(f"`{r['workdir']}` ({r['config']['num_epochs']} epochs)" for r in runs) + "."]
  for r in runs:
    task = tasks.get(r["task"])
    if not task.per_step_metric:
      continue
    key = f"test_{task.per_step_metric}"
    by_step = {m: np.mean(np.asarray(d["final"][key])[~np.asarray(d["final"]["diverged"], bool)], 0)
               for m, d in r["methods"].items() if key in d["final"]}
    lines += per_step_lines(by_step, f"{r['label']}: {task.per_step_caption}", task.per_step_prefix)
  return "\n".join(lines) + "\n", out.getvalue()


def _fmt_hours(seconds: float) -> str:
  if math.isnan(seconds):
    return "-"
  return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def alignment_summary(run: dict) -> dict[str, dict[int, tuple[float, float, int]]]:
  """method -> epoch -> (mean, s.e.m., seeds) of the overall cosine with BPTT."""
  return {method: plots.alignment_summary(data["alignment"]) for method, data in run["methods"].items()}


def alignment_by_tensor(runs: list[dict]) -> str:
  """Markdown: cosine with BPTT per parameter tensor, mean (min over seeds) per alignment epoch."""
  tensors = ("W", "b", "B", "W_out", "b_out", "all")
  lines = ["| task | method | epoch | " + " | ".join(f"cos {t}" for t in tensors) + " |",
           "|---|---|---|" + "---|" * len(tensors)]
  for run in runs:
    for method, data in run["methods"].items():
      if method == "bptt":
        continue
      for epoch in sorted({r["epoch"] for r in data["alignment"]}):
        rows = [r for r in data["alignment"] if r["epoch"] == epoch]
        cells = [f"{np.mean([r[f'cos_{t}'] for r in rows]):.4f} ({np.min([r[f'cos_{t}'] for r in rows]):.4f})"
                 for t in tensors]
        lines.append(f"| {run['label']} | {method} | {epoch} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n\nMean over seeds (minimum in brackets) of the cosine between the method's " \
      "gradient and BPTT's on each seed's fixed probe batch, at the start of the epoch.\n"


def figure1(runs: list[dict], path: pathlib.Path) -> None:
  """Figure 1: one panel per run (task), each method's alignment with BPTT per epoch."""
  plots.alignment_figure([(f"{run['label']} ({run['config']['num_epochs']} epochs)",
                           {m: d["alignment"] for m, d in run["methods"].items()}) for run in runs], path)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  runs = merge_runs([load_run(w) for w in args.workdirs])
  markdown, table_csv = table1(runs)
  args.out.mkdir(parents=True, exist_ok=True)
  checkpoints.atomic_write_text(args.out / "table1.md", markdown)
  checkpoints.atomic_write_text(args.out / "table1.csv", table_csv)
  figure1(runs, args.out / "figure1.png")
  lines = []
  for run in runs:
    for method, by_epoch in alignment_summary(run).items():
      for epoch, (mean, sem, n) in by_epoch.items():
        lines.append(f"| {run['label']} | {method} | {epoch} | {mean:.6f} | {sem:.1e} | {n} |")
  checkpoints.atomic_write_text(args.out / "figure1.md", "| task | method | epoch | cos mean | s.e.m. | seeds |\n"
                                "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
  checkpoints.atomic_write_text(args.out / "alignment_by_tensor.md", alignment_by_tensor(runs))
  print(markdown)
  print(f"wrote {args.out}/table1.md, table1.csv, figure1.png, figure1.md, alignment_by_tensor.md")


if __name__ == "__main__":
  main()

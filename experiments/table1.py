"""The paper's Table 1 and Figure 1 in one command: every (task, method) at the method's recipe,
beside the baselines at the shared recipe, split over the machine, resumable.

    python -m experiments.table1                              # both tasks, every method
    python -m experiments.table1 --tasks=copy_paste --dry-run # the plan and an estimated time
    python -m experiments.table1 --config=heidelberg_digits=experiments/heidelberg_digits.py:dev

Each (task, method, recipe) pair is one ordinary run (``experiments.main``) in
``<workdir>/<task>/<method>`` (``<method>_shared_recipe`` for a tuned method at the shared recipe,
the "untuned" row), started as a subprocess. On a CPU, one single-threaded process per core
(``--processes``), longest runs first; on an accelerator, one after the other. Re-running the
command resumes every unfinished run from its checkpoint (a SIGTERM or SIGINT is passed to the
runs, which checkpoint and stop). With ``--keep=DIR`` each finished run's result files (no
checkpoints) are copied to DIR, to commit; a checkout without the runs restores them from there,
and ``--adopt`` takes rows from earlier finished runs whose config is the row's. Arguments after
``--`` go to every run (e.g. ``-- --config.num_epochs=2``).

Writes ``<workdir>/table1.md``, ``table1.csv``, ``figure1.png`` (cosine with BPTT's gradient, per
task) and ``curves.png`` (the test metric per epoch, mean ± s.e.m. over seeds) from whatever has
finished, after every run.
"""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import threading
from typing import Callable, Optional

import numpy as np
from absl import app, flags, logging

from experiments import checkpoints, plots, recipes, report, tasks, workdir
from experiments.summary import mean_std, per_step_lines

DEFAULT_CONFIGS = {"copy_paste": "experiments/copy_paste.py", "heidelberg_digits": "experiments/heidelberg_digits.py"}
# Rough single-core cost of one optimizer step of one seed at T=400, batch 64, N=64, float32, in
# seconds: the median epoch of the final Copy-Paste protocol (docs/results/copy_paste_final/*/
# <method>/timing.jsonl) / (5 seeds x 50 steps). Only for --dry-run's estimate.
SECONDS_PER_SEED_STEP = {"bptt": 0.070, "rhel": 0.061, "rhel_centered": 0.124, "tbptt": 0.116, "eprop": 0.050,
                         "readout": 0.026}
EPROP_ONLINE_FACTOR = 3.7  # online traces against the reverse-mode form (docs/results/eprop_forms)


@dataclasses.dataclass
class Entry:
  """One run of the plan."""
  task: str
  method: str
  shared_recipe: bool  # a tuned method at the shared recipe (the untuned row)
  config_spec: str
  workdir: pathlib.Path
  recipe: str
  estimate_seconds: Optional[float]  # None: unknown before the run has timed an epoch

  @property
  def row(self) -> str:
    return f"{self.method} (shared recipe)" if self.shared_recipe else self.method

  def command(self, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "experiments.main", f"--config={self.config_spec}", f"--workdir={self.workdir}",
            *extra, f"--config.methods=('{self.method}',)", *(["--norecipes"] if self.shared_recipe else [])]


def load_config(spec: str):
  """``path[:variant]`` -> the config its ``get_config`` returns (as ``--config`` would)."""
  path, _, variant = spec.partition(":")
  if not pathlib.Path(path).exists():
    raise ValueError(f"--config: no config file {path!r}")
  module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def estimate(config, method: str, shared_recipe: bool = False) -> Optional[float]:
  """Seconds of one core for ``method`` on ``config``'s Copy-Paste protocol (rough; see
  SECONDS_PER_SEED_STEP); None for other tasks, whose step count depends on their data."""
  c = config if shared_recipe else recipes.apply(config, method)
  if c.task.name != "copy_paste":
    return None
  per_step = SECONDS_PER_SEED_STEP.get(method, SECONDS_PER_SEED_STEP["bptt"])
  if method == "eprop" and c.method.eprop_online:
    per_step *= EPROP_ONLINE_FACTOR
  scale = (c.task.seq_len / 400) * (c.batch_size / 64) * (c.model.num_hidden / 64) ** 2
  return per_step * scale * c.num_epochs * c.steps_per_epoch * c.num_seeds


def remaining(entry: "Entry", num_epochs: int) -> Optional[float]:
  """The entry's estimate, or from its own timing.jsonl once it has run an epoch: the mean epoch
  times the epochs left."""
  rows = checkpoints.read_jsonl(entry.workdir / entry.method / "timing.jsonl")
  if not rows:
    return entry.estimate_seconds
  done = len({r["epoch"] for r in rows})
  return float(np.mean([r["seconds"] for r in rows])) * max(num_epochs - done, 0)


def plan(task_names: list[str], config_specs: dict[str, str], root: pathlib.Path,
         methods: Optional[list[str]] = None) -> list[Entry]:
  """Every (task, method) at the method's recipe, plus the shared-recipe row of each tuned method."""
  entries = []
  for task in task_names:
    spec = config_specs[task]
    config = load_config(spec)
    unknown = sorted(set(methods or ()) - set(config.methods))
    if unknown:
      raise ValueError(f"--methods: {unknown} are not in {spec}'s config.methods {list(config.methods)}")
    for method in (m for m in config.methods if not methods or m in methods):
      tuned = bool(recipes.fields(config, method))
      entries.append(Entry(task, method, False, spec, root / task / method, recipes.describe(config, method),
                           estimate(config, method)))
      if tuned:  # the untuned row stays beside the tuned one
        entries.append(Entry(task, method, True, spec, root / task / f"{method}_shared_recipe", "shared",
                             estimate(config, method, shared_recipe=True)))
  return entries


def row_config(entry: Entry) -> dict:
  """The config (JSON form) the entry's run trains with, as experiments.main saves it."""
  config = load_config(entry.config_spec)
  config.methods = (entry.method,)
  if entry.shared_recipe:
    config.recipes = type(config.recipes)()
  return json.loads(config.to_json_best_effort())


def adopt(runs: list[pathlib.Path], entries: list[Entry], kept_dir: Callable[[Entry], pathlib.Path]) -> list[str]:
  """Splits each finished method of ``runs`` whose config is an entry's into that entry's kept folder
  (the first such run per entry; an entry already kept is left alone). Returns what was done."""
  done = []
  for e in entries:
    if (kept_dir(e) / e.method / "final.json").exists():
      continue
    expected = row_config(e)
    for run in runs:
      if not (run / "config.json").exists():
        raise ValueError(f"--adopt: {run} has no config.json")
      saved = json.loads((run / "config.json").read_text())
      if e.method not in saved.get("methods", ()) or not (run / e.method / "final.json").exists():
        continue
      changed, _ = workdir.compare_configs({**saved, "methods": [e.method]}, expected)
      if changed:
        done.append(f"{e.task} / {e.row}: not adopted from {run} (config fields {changed} differ)")
        continue
      workdir.split_method(run, e.method, kept_dir(e))
      done.append(f"{e.task} / {e.row}: adopted from {run}")
      break
  return done


def _fmt(seconds: Optional[float]) -> str:
  if seconds is None:
    return "unknown"
  return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def schedule(entries: list[Entry], processes: int) -> list[list[Entry]]:
  """Longest first (unknown lengths last), each to the least loaded process; then, within each
  process, the rows at a method's own recipe before the shared-recipe rows (the same total per
  process, but the tuned rows, the new ones, finish first)."""
  slots: list[list[Entry]] = [[] for _ in range(processes)]
  load = [0.0] * processes
  for e in sorted(entries, key=lambda e: -(e.estimate_seconds if e.estimate_seconds is not None else -1)):
    i = int(np.argmin(load))
    slots[i].append(e)
    load[i] += e.estimate_seconds or 0.0
  return [sorted(slot, key=lambda e: e.shared_recipe) for slot in slots]


class Runner:
  """Runs each slot's entries one after the other in subprocesses; forwards SIGTERM/SIGINT."""

  def __init__(self, slots: list[list[Entry]], extra: list[str], pin: bool, on_done,
               keep: Optional[Callable[[Entry], pathlib.Path]] = None):
    self.slots, self.extra, self.pin, self.on_done, self.keep = slots, extra, pin, on_done, keep
    self.procs: dict[int, subprocess.Popen] = {}
    self.stopped: Optional[int] = None
    self.failures: list[tuple[Entry, int]] = []
    self.lock = threading.Lock()

  def _env(self) -> dict:
    env = dict(os.environ)
    if self.pin:  # one core each: XLA single-threaded
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1").strip()
    return env

  def _slot(self, index: int, entries: list[Entry]) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    for entry in entries:
      with self.lock:
        if self.stopped is not None:
          return
      # A restored run still goes through experiments.main, which checks its config and, finding it
      # finished, trains nothing.
      if self.keep is not None and workdir.restore_finished(self.keep(entry), entry.workdir, entry.method):
        logging.info("%s / %s: finished run restored from %s", entry.task, entry.row, self.keep(entry))
      with self.lock:
        if self.stopped is not None:
          return
        entry.workdir.parent.mkdir(parents=True, exist_ok=True)
        log = open(entry.workdir.parent / f"{entry.workdir.name}.log", "a")
        preexec = (lambda core=cores[index % len(cores)]: os.sched_setaffinity(0, {core})) if self.pin and cores \
            else None
        proc = subprocess.Popen(entry.command(self.extra), env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=preexec)
        self.procs[index] = proc
      logging.info("started %s / %s (process %d, log %s.log)", entry.task, entry.row, index, entry.workdir)
      code = proc.wait()
      log.close()
      with self.lock:
        self.procs.pop(index, None)
        if code != 0 and self.stopped is None:
          self.failures.append((entry, code))
          logging.error("%s / %s exited with %d; see %s.log", entry.task, entry.row, code, entry.workdir)
      if code == 0 and self.keep is not None and not (self.keep(entry) / entry.method / "final.json").exists():
        workdir.keep_finished(entry.workdir, self.keep(entry))
      self.on_done()

  def run(self) -> None:
    def forward(signum, _frame):
      with self.lock:
        self.stopped = signum
        for proc in self.procs.values():
          proc.send_signal(signum)
      logging.warning("stopping: %s passed to the running runs; re-run the same command to resume",
                      signal.Signals(signum).name)
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
      threads = [threading.Thread(target=self._slot, args=(i, s)) for i, s in enumerate(self.slots) if s]
      for t in threads:
        t.start()
      for t in threads:
        t.join()
    finally:
      for s, handler in old.items():
        signal.signal(s, handler)


def _load(entry: Entry) -> Optional[dict]:
  """The entry's run (report.load_run), or None before its config exists."""
  if not (entry.workdir / "config.json").exists():
    return None
  return report.load_run(entry.workdir)


def write_outputs(entries: list[Entry], root: pathlib.Path, command: str) -> str:
  """table1.md / .csv, figure1.png and curves.png from the finished (and running) entries."""
  task_names = list(dict.fromkeys(e.task for e in entries))
  runs = {id(e): _load(e) for e in entries}
  cells, out = {}, io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["task", "row", "method", "recipe", "mean_pct", "std_pct", "seeds", "diverged_seeds", "epochs",
                   "wall_seconds", "revisions", "workdir"])
  for e in entries:
    run = runs[id(e)]
    if run is None:
      cells[e.row, e.task] = "not started"
      continue
    key = f"test_{tasks.get(e.task).primary_metric}"
    if e.method in run["methods"]:
      final = run["methods"][e.method]["final"]
      ok = ~np.asarray(final["diverged"], bool)
      mean, std = mean_std(np.asarray(final[key])[ok])
      cells[e.row, e.task] = f"{100 * mean:.2f} ± {100 * std:.2f}" + ("" if ok.all() else f" ({(~ok).sum()} div.)")
      writer.writerow([e.task, e.row, e.method, e.recipe, f"{100 * mean:.4f}", f"{100 * std:.4f}", int(ok.sum()),
                       np.flatnonzero(~ok).tolist(), run["config"]["num_epochs"],
                       f"{run['methods'][e.method]['wall_seconds']:.0f}", " ".join(trained_revisions(e)),
                       str(e.workdir)])
    elif e.method in run["in_progress"]:
      data = run["in_progress"][e.method]
      mean, _ = mean_std([r[key] for r in data["rows"] if not r.get("diverged")])
      cells[e.row, e.task] = f"in progress: epoch {data['epoch'] + 1}/{run['config']['num_epochs']}, {100 * mean:.2f}"
    else:
      cells[e.row, e.task] = "not started"
  rows = list(dict.fromkeys(e.row for e in entries))
  recipe_of = {(e.row, e.task): e.recipe for e in entries}
  lines = ["# Table 1", "", f"- command: `{command}`", f"- git revision: `{report_revision()}`", "",
           "| method | " + " | ".join(f"{t} (ours) | {t} (paper) | {t} recipe" for t in task_names) + " |",
           "|---|" + "---|---|---|" * len(task_names)]
  for row in rows:
    method = row.split(" ")[0]
    parts = []
    for t in task_names:
      paper = tasks.get(t).paper_table1.get(method, "-")
      parts.append(f"{cells.get((row, t), '-')} | {paper if row == method else '-'} | {recipe_of.get((row, t), '-')}")
    lines.append(f"| {row} | " + " | ".join(parts) + " |")
  lines += ["", "Mean ± std over seeds of the final test accuracy (%). `readout` trains only the readout of the "
            "untrained network: the floor a method must beat. A method with a recipe of its own (tuned by the rule "
            "of docs/tuning.md) also runs at the shared recipe, BPTT's (`(shared recipe)` rows). Runs: "
            f"`{root}/<task>/<row>`."]
  trained = [f"{e.row} ({e.task}): " + ", ".join(f"`{r}`" for r in trained_revisions(e)) for e in entries
             if runs[id(e)] is not None and trained_revisions(e)]
  if trained:
    lines += ["", "Trained at (the git revisions of the code that trained each row): " + "; ".join(trained) + "."]
  merged = []
  for t in task_names:
    tuned = [runs[id(e)] for e in entries if e.task == t and not e.shared_recipe and runs[id(e)] is not None]
    if tuned:
      merged += report.merge_runs(tuned)
  for run in merged:
    task = tasks.get(run["task"])
    if not task.per_step_metric:
      continue
    key = f"test_{task.per_step_metric}"
    by_step = {m: np.mean(np.asarray(d["final"][key])[~np.asarray(d["final"]["diverged"], bool)], 0)
               for m, d in run["methods"].items() if key in d["final"]}
    lines += per_step_lines(by_step, f"{run['label']}: {task.per_step_caption}", task.per_step_prefix)
  if any(r["methods"] for r in merged):
    lines += ["", "![Figure 1](figure1.png)", "", "![learning curves](curves.png)"]
    report.figure1([r for r in merged if r["methods"]], root / "figure1.png")
    panels = [(t, {e.row: checkpoints.read_jsonl(e.workdir / e.method / "metrics.jsonl")
                   for e in entries if e.task == t}, f"test_{tasks.get(t).primary_metric}") for t in task_names]
    plots.learning_curves(panels, True, root / "curves.png", ylabel="test accuracy (%)")
  text = "\n".join(lines) + "\n"
  checkpoints.atomic_write_text(root / "table1.md", text)
  checkpoints.atomic_write_text(root / "table1.csv", out.getvalue())
  return text


def trained_revisions(entry: Entry) -> list[str]:
  """The git revisions of the code that trained the entry's run, oldest first: from its epochs'
  timing rows, or, for a run from before they named it, from its invocations (those before it was
  adopted: later ones found it finished)."""
  timing = checkpoints.read_jsonl(entry.workdir / entry.method / "timing.jsonl")
  revisions = [r["revision"] for r in timing if "revision" in r]
  if not revisions:
    for i in checkpoints.read_jsonl(entry.workdir / "invocations.jsonl"):
      if "split_from" in i:
        break
      revisions += [i["revision"]] if "revision" in i else []
  return list(dict.fromkeys(revisions))


def report_revision() -> str:
  from experiments.workdir import git_revision  # noqa: PLC0415
  return git_revision()


_TASKS = flags.DEFINE_list("tasks", list(DEFAULT_CONFIGS), "Table 1's columns to run.")
_CONFIGS = flags.DEFINE_multi_string("config", [], "TASK=path[:variant]: the config of a task's column "
                                     f"(default: {DEFAULT_CONFIGS}).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/table1", "Where the runs and the table go.")
_PROCESSES = flags.DEFINE_integer("processes", None, "Runs at once (default: one per CPU core on a CPU, "
                                  "1 on an accelerator).")
_METHODS = flags.DEFINE_list("methods", None, "Only these methods (default: each config's methods).")
_KEEP = flags.DEFINE_string(
    "keep", None, "Folder to keep each finished run's result files in (no checkpoints; ~100 kB for a Copy-Paste "
    "run, mostly per-epoch metrics), mirroring --workdir, to commit: a checkout without the runs restores the "
    "finished ones from it instead of training them again.")
_ADOPT = flags.DEFINE_list(
    "adopt", [], "Finished workdirs of experiments.main (one or several methods each) whose methods are taken as "
    "rows when the row's config is theirs (checked field by field, and again by experiments.main): each such "
    "method is split into the row's folder under --keep, and is not trained again.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan and an estimated time; start nothing.")


def main(argv):
  logging.set_verbosity(logging.INFO)
  extra = argv[1:]
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    raise app.UsageError(f"arguments after -- must be config overrides (--config.FIELD=VALUE), got {bad}")
  specs = dict(DEFAULT_CONFIGS)
  for item in _CONFIGS.value:
    task, sep, spec = item.partition("=")
    if not sep or task not in DEFAULT_CONFIGS:
      raise app.UsageError(f"--config={item!r}: use TASK=path[:variant] with TASK in {list(DEFAULT_CONFIGS)}")
    specs[task] = spec
  unknown = [t for t in _TASKS.value if t not in DEFAULT_CONFIGS]
  if unknown:
    raise app.UsageError(f"--tasks: unknown task(s) {unknown}; choose from {list(DEFAULT_CONFIGS)}")
  root = pathlib.Path(_WORKDIR.value)
  try:
    entries = plan(_TASKS.value, specs, root, _METHODS.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if _ADOPT.value and (not _KEEP.value or extra):
    raise app.UsageError("--adopt needs --keep (the adopted rows go there) and no overrides after --")
  import jax  # noqa: PLC0415  (only to see the backend)
  on_cpu = jax.default_backend() == "cpu"
  processes = _PROCESSES.value or (len(os.sched_getaffinity(0)) if on_cpu and hasattr(os, "sched_getaffinity")
                                   else os.cpu_count() if on_cpu else 1)
  slots = schedule(entries, processes)
  if _DRY_RUN.value:
    print(f"{len(entries)} runs on {processes} process(es) ({jax.default_backend()}):")
    print("| task | row | recipe | workdir | estimate (one core) | process |\n|---|---|---|---|---|---|")
    left = {}
    for i, slot in enumerate(slots):
      for e in slot:
        kept = _KEEP.value and (pathlib.Path(_KEEP.value) / e.workdir.relative_to(root) / e.method
                                / "final.json").exists()
        left[id(e)] = 0.0 if kept else remaining(e, load_config(e.config_spec).num_epochs)
        print(f"| {e.task} | {e.row} | {e.recipe} | {e.workdir} | {_fmt(left[id(e)])} | {i} |")
    longest = max(sum(left[id(e)] or 0.0 for e in s) for s in slots)
    unknown = sum(v is None for v in left.values())
    print(f"\nEstimated: {_fmt(longest)} of wall time on {processes} process(es)"
          + (f", plus {unknown} run(s) of unknown length (a task whose steps depend on its data: the estimate "
             "comes from a run's own timing once it has trained an epoch)" if unknown else "")
          + ". Rough: from the final Copy-Paste protocol's timings, one core of the 2-core CPU machine each.")
    if extra:
      print(f"Every run also gets: {shlex.join(extra)}")
    return
  if _ADOPT.value:
    for line in adopt([pathlib.Path(d) for d in _ADOPT.value], entries,
                      lambda e: pathlib.Path(_KEEP.value) / e.workdir.relative_to(root)):
      logging.info("%s", line)
  command = shlex.join(["python", "-m", "experiments.table1", *sys.argv[1:]])
  root.mkdir(parents=True, exist_ok=True)
  lock = threading.Lock()

  def refresh():
    with lock:
      try:
        write_outputs(entries, root, command)
      except ValueError as e:  # a run's files are inconsistent: say so, keep the others going
        logging.error("table1: %s", e)

  keep = None if not _KEEP.value else (lambda e: pathlib.Path(_KEEP.value) / e.workdir.relative_to(root))
  runner = Runner(slots, extra, pin=on_cpu and processes > 1, on_done=refresh, keep=keep)
  runner.run()
  text = write_outputs(entries, root, command)
  if runner.stopped is not None:
    sys.exit(128 + runner.stopped)
  if runner.failures:
    for entry, code in runner.failures:
      print(f"FAILED: {entry.task} / {entry.row} (exit {code}); log: {entry.workdir}.log", file=sys.stderr)
    sys.exit(1)
  print(text)
  print(f"wrote {root}/table1.md, table1.csv, figure1.png, curves.png")


if __name__ == "__main__":
  app.run(main)

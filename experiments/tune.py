"""Tunes a baseline by the one rule of docs/tuning.md: a fixed grid on the validation root seed.

    python -m experiments.tune --config=experiments/copy_paste.py --method=eprop
    python -m experiments.tune --config=experiments/copy_paste.py --method=tbptt --dry-run

Every setting of the method's grid is an ordinary run (``runs/tune/<config name>/<method>/<label>``)
of the config with the rule's overrides (validation root seed, epochs) and the setting's fields,
trained one after the other; re-running the command resumes where it stopped. The same command
started once per core splits the grid: each run is claimed with a lock file while it trains, and a
process passes over runs another one holds. With ``--keep=DIR`` each finished run's result files
(no checkpoints) are also copied to DIR, to commit; a checkout that lacks ``runs/`` then restores
them instead of training them again. When every setting has finished, ``tuning.md`` /
``tuning.json`` in the tuning directory rank them and name the setting the rule picks. The grid and the rule are fixed here, before any of them runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import math
import pathlib
import shlex
import sys
from typing import Any, Optional

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import checkpoints, tasks, workdir
from experiments.sweep import with_values
from experiments.train import Interrupted, run_experiment

# The rule's fixed part: the validation root seed (the reported seeds come from root 0) and a
# shorter run than the protocol's. Alignment is not measured while tuning.
VALIDATION_SEED = 1000
RULE = {"seed": VALIDATION_SEED, "num_epochs": 50, "alignment_epochs": ()}
# Base learning rates x one multiplier of the recurrent tensors' learning rates (W, b, B, on top of
# the config's own multipliers); the readout keeps the base lr.
BASE_LRS = (3e-3, 1e-3, 3e-4)
RECURRENT_MULTIPLIERS = (1.0, 0.3, 0.1, 0.03, 0.01)
# A task whose protocol selects on leave-one-speaker-out folds (Heidelberg Digits' dev corpus,
# config.data.num_validation_speakers == 0) is tuned on those folds: each setting trains once per
# held-out training speaker, 3 seeds each, and its score is the mean over folds. Every fold costs a
# run, so the multiplier grid is coarser there.
FOLDS = (0, 1, 2)
FOLD_SEEDS = 3
FOLD_MULTIPLIERS = (1.0, 0.1, 0.01)
RECURRENT = ("W", "b", "B")
# Method-specific fields every setting of its grid shares. e-prop's reverse-mode form computes the
# same gradient as its online traces (tests/test_gradients.py, float64 to 1e-10) at a quarter of
# the cost on a CPU.
GRID_FIELDS = {"eprop": {"method.eprop_online": False}}
TUNED_METHODS = ("eprop", "tbptt")
# Two settings within this many points of mean final accuracy tie; the smaller change wins.
TIE_POINTS = 0.1


@dataclasses.dataclass(frozen=True)
class Setting:
  label: str
  fields: dict  # dotted config field -> value
  folds: tuple = ()  # held-out speakers; () = one run on the validation root seed

  def runs(self) -> list[tuple[str, dict]]:
    """``(workdir name, config fields)`` of each run of the setting (``<label>_val<k>`` per fold, as
    ``experiments.probe_table`` groups folds)."""
    if not self.folds:
      return [(self.label, self.fields)]
    return [(f"{self.label}_val{k}", {**self.fields, "data.validation_speaker": k, "data.eval_split": "validation",
                                       "num_seeds": FOLD_SEEDS}) for k in self.folds]

  def change(self, config) -> float:
    """Distance from the config's recipe: sum over fields of |log10(new / old)| (lr-like fields)."""
    total = 0.0
    for path, value in self.fields.items():
      old = _get(config, path)
      if isinstance(value, bool) or value == old:
        continue
      total += abs(math.log10(value / old)) if old and value else 1.0
    return total


def grid(config, method: str) -> list[Setting]:
  """The method's settings, in the order they run."""
  if method not in TUNED_METHODS:
    raise ValueError(f"--method={method!r}: the tuning grid covers {list(TUNED_METHODS)} (BPTT and RHEL keep "
                     "their tuned recipes; docs/tuning.md)")
  folds = uses_folds(config)
  out = []
  for lr, m in itertools.product(BASE_LRS, FOLD_MULTIPLIERS if folds else RECURRENT_MULTIPLIERS):
    fields = {"train.lr": lr, **{f"train.lr_scale.{k}": float(f"{config.train.lr_scale[k] * m:.6g}") for k in RECURRENT},
              **GRID_FIELDS.get(method, {})}
    out.append(Setting(f"lr{lr:g}_rec{m:g}", fields, FOLDS if folds else ()))
  return out


def uses_folds(config) -> bool:
  """Whether the task's protocol selects on leave-one-speaker-out folds."""
  return "data" in config and config.data.get("num_validation_speakers", 1) == 0


def run_config(config, method: str, name: str, fields: dict) -> ml_collections.ConfigDict:
  c = with_values(config, {"methods": (method,), **RULE, **fields})
  c.name = f"{config.name}_tune_{method}_{name}"
  return c


def final_accuracy(root: pathlib.Path, setting: Setting, method: str, metric: str) -> Optional[list[float]]:
  """The setting's final metric per seed (on the validation root seed) or, with folds, each fold's
  mean over seeds (on its held-out speaker); None while unfinished."""
  out = []
  for name, _ in setting.runs():
    path = root / name / method / "final.json"
    if not path.exists():
      return None
    values = json.loads(path.read_text())[f"test_{metric}"]
    out += [float(np.mean(values))] if setting.folds else values
  return out


def pick(config, method: str, results: dict[str, list[float]], settings: list[Setting]) -> dict[str, Any]:
  """The rule: the highest mean final accuracy; within TIE_POINTS, the smallest change of recipe."""
  by_label = {s.label: s for s in settings}
  means = {label: 100 * float(np.mean(v)) for label, v in results.items()}
  best = max(means.values())
  tied = [label for label, mean in means.items() if best - mean < TIE_POINTS]
  chosen = min(tied, key=lambda label: (by_label[label].change(config), -means[label]))
  return {"method": method, "chosen": chosen, "fields": by_label[chosen].fields, "mean": means[chosen],
          "best_mean": best, "tied": tied}


def tuning_table(config, method: str, root: pathlib.Path, settings: list[Setting], metric: str) -> tuple[str, dict]:
  rows, results = [], {}
  for s in settings:
    acc = final_accuracy(root, s, method, metric)
    if acc is not None:
      results[s.label] = acc
    cells = (f"{100 * np.mean(acc):.2f} ± {100 * np.std(acc):.2f}" if acc is not None else "running / not started",
             f"{100 * np.min(acc):.2f}" if acc is not None else "")
    fields = ", ".join(f"`{k}={v:g}`" if not isinstance(v, bool) else f"`{k}={v}`" for k, v in s.fields.items())
    rows.append(f"| {s.label} | {fields} | {cells[0]} | {cells[1]} |")
  choice = pick(config, method, results, settings) if len(results) == len(settings) else None
  folds = uses_folds(config)
  what = (f"folds: held-out training speakers {list(FOLDS)}, {FOLD_SEEDS} seeds each; the value is the mean over "
          "folds, 'worst' the worst fold" if folds else f"{config.num_seeds} seeds; 'worst' the worst seed")
  lines = [f"# Tuning {method} on `{config.name}` (validation root seed {VALIDATION_SEED})", "",
           f"Rule (docs/tuning.md): {RULE['num_epochs']} epochs, {what}; the highest mean final "
           f"`{metric}`; settings within {TIE_POINTS} point of the best tie, and the smallest change of recipe "
           "(sum of |log10 ratio| of the changed fields) wins.", "",
           f"| setting | fields | final {metric} (%, mean ± std) | worst |", "|---|---|---|---|", *rows, ""]
  if choice:
    lines += [f"**Chosen: `{choice['chosen']}`** ({choice['mean']:.2f} %; best {choice['best_mean']:.2f} %; "
              f"tied: {', '.join(choice['tied'])}).", ""]
  else:
    lines += [f"{len(results)} of {len(settings)} settings finished; nothing chosen yet.", ""]
  return "\n".join(lines), {"settings": {s.label: s.fields for s in settings}, "results": results,
                            "choice": choice}


_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:variant]).",
                                          lock_config=False)
_METHOD = flags.DEFINE_enum("method", None, list(TUNED_METHODS), "The method to tune.")
_ROOT = flags.DEFINE_string("workdir", None, "Tuning directory; default runs/tune/<config name>/<method>.")
_KEEP = flags.DEFINE_string(
    "keep", None, "Folder to keep each finished run's result files in (no checkpoints or pictures; ~100 kB "
    "a run), e.g. docs/results/tuning/<config name>/<method>, to commit: a fresh checkout restores the finished "
    "runs from it instead of training them again.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the settings and their workdirs; start nothing.")
flags.mark_flags_as_required(["config", "method"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  config, method = _CONFIG.value, _METHOD.value
  root = pathlib.Path(_ROOT.value or f"runs/tune/{config.name}/{method}")
  settings = grid(config, method)
  metric = tasks.get(config.task.name).primary_metric
  command = shlex.join(["python", "-m", "experiments.tune", *sys.argv[1:]])
  keep = pathlib.Path(_KEEP.value) if _KEEP.value else None
  for s in settings:
    for name, fields in s.runs():
      if _DRY_RUN.value:
        print(f"{root / name}: {fields}")
        continue
      with claim(root / name) as mine:
        if not mine:
          logging.info("%s: another process is training it; passing over it", root / name)
          continue
        if keep is not None and workdir.restore_finished(keep / name, root / name, method):
          logging.info("%s: finished run restored from %s", root / name, keep / name)
        if (root / name / method / "final.json").exists():
          # Finished (its checkpoints may not have travelled with it): its config is checked, and
          # it is not trained again.
          workdir.prepare_workdir(run_config(config, method, name, fields), root / name, overwrite=False)
          if keep is not None and not (keep / name / method / "final.json").exists():
            workdir.keep_finished(root / name, keep / name)
          continue
        try:
          run_experiment(run_config(config, method, name, fields), root / name, command=f"{command}  # run {name}")
        except Interrupted as e:
          logging.warning("%s", e)
          sys.exit(128 + e.signum)
        if keep is not None:
          workdir.keep_finished(root / name, keep / name)
      write_table(config, method, root, settings, metric, keep)
  if not _DRY_RUN.value:
    print(write_table(config, method, root, settings, metric, keep))


def write_table(config, method: str, root: pathlib.Path, settings: list[Setting], metric: str,
                keep: Optional[pathlib.Path] = None) -> str:
  """``tuning.md`` / ``tuning.json`` from the runs finished so far (atomic writes; into ``keep`` too);
  returns the text."""
  text, record = tuning_table(config, method, root, settings, metric)
  for d in (root,) if keep is None else (root, keep):
    d.mkdir(parents=True, exist_ok=True)
    checkpoints.atomic_write_text(d / "tuning.md", text)
    checkpoints.atomic_write_text(d / "tuning.json", json.dumps(record, indent=1))
  return text


@contextlib.contextmanager
def claim(workdir: pathlib.Path):
  """Yields True while this process holds ``workdir``'s lock, False if another process holds it.

  An advisory ``flock`` on ``<workdir>.lock``: the kernel drops it when its holder exits, however it
  exits, so a killed process never leaves a run claimed.
  """
  workdir.parent.mkdir(parents=True, exist_ok=True)
  with open(workdir.with_name(workdir.name + ".lock"), "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _get(config, path: str):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


if __name__ == "__main__":
  app.run(main)

"""A run's workdir: the saved config (a different one is refused; a field added by newer code is
accepted at its legacy value, a renamed one under its new name: both from the field's declaration,
``experiments/schema.py``) and the git revision of the code that runs."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time

from absl import logging

from experiments import base_config, checkpoints, schema, tasks
from experiments.sharding import is_primary, sync_processes
from rhel_jax.methods import METHODS


def git_revision() -> str:
  """Short revision of the code that runs, ``-dirty`` when tracked files outside docs/ differ."""
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).parent, check=True).stdout.strip()
    # Result files under docs/ that a measurement rewrites do not make the code dirty.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)docs"],
                           capture_output=True, text=True, cwd=pathlib.Path(__file__).parent).stdout.strip()
    return rev + ("-dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def prepare_workdir(config, workdir: pathlib.Path, overwrite: bool) -> None:
  """Creates the workdir and saves the config; refuses a workdir that holds a different run.

  In a multi-process run every process checks (and refuses alike); process 0 deletes and writes,
  and the others wait for it.
  """
  resolved = json.loads(config.to_json_best_effort())
  path = workdir / "config.json"
  if path.exists():
    changed, added = compare_configs(json.loads(path.read_text()), resolved)
    if changed:
      if not overwrite:
        raise ValueError(f"workdir {workdir} holds a run with a different config (fields {changed}); "
                         "use another --workdir, or --overwrite to delete that run")
      if is_primary():
        shutil.rmtree(workdir)
    elif added:
      logging.info("workdir %s: config fields new since the run started, at their defaults: %s", workdir, added)
  workdir.mkdir(parents=True, exist_ok=True)
  checkpoints.atomic_write_text(path, json.dumps(resolved, indent=1, sort_keys=True))
  sync_processes(f"workdir {workdir} prepared")


def compare_configs(saved: dict, resolved: dict) -> tuple[list[str], list[str]]:
  """``(changed, added)``: the dotted fields where a saved config (JSON form) and the config of
  today (``resolved``) differ in a way that makes them different runs, and those absent from the
  saved one that do not.

  ``recipes.<method>`` and a ``method.*`` option count only where the run trains a method that
  reads them. A field added by newer code (absent from the saved config) is accepted when its value
  is the one that reproduces the code before it (its declared legacy value), so a long run resumes
  across such a change; a field saved under a former name counts under its new one; any other
  difference is a change.
  """
  fields = declarations_of(resolved)
  diff = sorted(_diff_keys(_trained_part(schema.renamed(saved, fields)), _trained_part(resolved)))
  changed = [k for k, added in diff if not added or _lookup(resolved, k) != schema.legacy_value(fields, k)]
  return changed, [k for k, added in diff if added]


def option_keys(methods) -> set:
  """The ``config.method.<key>`` fields that ``methods`` read: their options in the registry."""
  return {o.config_key for m in methods if m in METHODS for o in METHODS[m].options}


def _trained_part(config: dict) -> dict:
  """The config without what its methods do not read: the recipes and the ``method.*`` options of
  methods it does not train. Those change none of its runs, so a recipe or an option default set
  for one method (a tuned e-prop, its reverse-mode form) leaves the other methods' workdirs
  resumable."""
  methods = config.get("methods") or ()
  out = dict(config)
  if isinstance(config.get("recipes"), dict):
    out["recipes"] = {m: r for m, r in config["recipes"].items() if m in methods}
  if isinstance(config.get("method"), dict) and all(m in METHODS for m in methods):
    keys = option_keys(methods)
    out["method"] = {k: v for k, v in config["method"].items() if k in keys}
  return out


def declarations_of(config: dict) -> tuple:
  """The declared fields of a config (JSON form): the shared ones and its task's (if registered)."""
  task = config.get("task")
  name = task.get("name") if isinstance(task, dict) else None
  return base_config.declarations(name if name in tasks.TASKS else None)


def renamed_fields(saved: dict) -> dict:
  """A saved config (JSON form) with each field saved under a former name moved to its new one."""
  return schema.renamed(saved, declarations_of(saved))


def with_added_fields(saved: dict) -> dict:
  """A saved config (JSON form), renamed fields under their new names and every field of its task
  that it predates at its legacy value."""
  return schema.with_legacy(saved, declarations_of(saved))


_MISSING = object()


def _lookup(tree: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return _MISSING
    tree = tree[part]
  return tree


def _diff_keys(saved, new, prefix=""):
  """Yields ``(dotted field, added)`` for each difference; ``added``: the field is not in ``saved``."""
  if isinstance(saved, dict) and isinstance(new, dict):
    for k in set(saved) | set(new):
      yield from _diff_keys(saved.get(k, _MISSING), new.get(k, _MISSING), f"{prefix}{k}.")
  elif saved is _MISSING:
    yield prefix.rstrip("."), True
  elif saved != new:
    yield prefix.rstrip("."), False


# What a kept run leaves behind: its checkpoints (the state to resume from, needless once finished)
# and its pictures (remade from the metrics).
_NOT_KEPT = shutil.ignore_patterns("checkpoint_*", "*.png", "*.tmp*")


def keep_finished(run: pathlib.Path, kept: pathlib.Path) -> None:
  """Copies finished run ``run``'s result files (config, metrics, final.json, results) to ``kept``,
  replacing it; a copy is built beside it and renamed into place, so ``kept`` is never half-written.

  A kept folder is small enough to commit (~100 kB for a 50-epoch Copy-Paste run of 5 seeds, mostly
  per-epoch metrics), so finished runs outlive the machine that trained them: ``restore_finished``
  puts one back on a checkout without ``runs/``.
  """
  tmp = kept.with_name(kept.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(run, tmp, ignore=_NOT_KEPT)
  shutil.rmtree(kept, ignore_errors=True)
  tmp.rename(kept)


def restore_finished(kept: pathlib.Path, run: pathlib.Path, method: str) -> bool:
  """Puts a kept finished run back in ``run`` unless ``run`` has finished itself; returns whether it did.

  A kept run replaces an unfinished one (its checkpoints are older than the kept result).
  """
  if (run / method / "final.json").exists() or not (kept / method / "final.json").exists():
    return False
  tmp = run.with_name(run.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(kept, tmp)
  shutil.rmtree(run, ignore_errors=True)
  tmp.rename(run)
  return True


def split_method(run: pathlib.Path, method: str, out: pathlib.Path) -> None:
  """One method of a finished run of several, as the run of that method alone, in ``out``.

  Its config with ``methods = [method]``, the method's files (no checkpoints) and the run's
  invocations, plus one naming the run it came from. A method's files do not depend on the other
  methods of its run (each trains from the same seeds and data; tests/test_experiments.py), so this
  is the run ``--config.methods=('<method>',)`` would have written. Written beside ``out`` and renamed.
  """
  config = json.loads((run / "config.json").read_text())
  if method not in config.get("methods", ()) or not (run / method / "final.json").exists():
    raise ValueError(f"{run}: no finished {method!r} run (methods {config.get('methods')})")
  tmp = out.with_name(out.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(run / method, tmp / method, ignore=_NOT_KEPT)
  checkpoints.atomic_write_text(tmp / "config.json",
                                json.dumps({**config, "methods": [method]}, indent=1, sort_keys=True))
  invocations = checkpoints.read_jsonl(run / "invocations.jsonl")
  checkpoints.write_jsonl(tmp / "invocations.jsonl", invocations + [
      {"command": f"split_method({str(run)!r}, {method!r})", "revision": git_revision(),
       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "split_from": str(run)}])
  shutil.rmtree(out, ignore_errors=True)
  tmp.rename(out)

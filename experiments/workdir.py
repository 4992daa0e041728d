"""A run's workdir: the saved config (a different one is refused, a field added by newer code is
accepted at its neutral value) and the git revision of the code that runs."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

from absl import logging

from experiments import checkpoints
from experiments.sharding import is_primary, sync_processes


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
    saved = renamed_fields(json.loads(path.read_text()))
    diff = sorted(_diff_keys(saved, resolved))
    # A field added by newer code (absent from the saved config) is accepted when its value is the
    # one that reproduces the code before it (ADDED_FIELDS), so a long run resumes across such a
    # change; any other difference is refused.
    changed = [k for k, added in diff if not added or _lookup(resolved, k) != ADDED_FIELDS.get(k, _MISSING)]
    if changed:
      if not overwrite:
        raise ValueError(f"workdir {workdir} holds a run with a different config (fields {changed}); "
                         "use another --workdir, or --overwrite to delete that run")
      if is_primary():
        shutil.rmtree(workdir)
    elif diff:
      logging.info("workdir %s: config fields new since the run started, at their defaults: %s", workdir,
                   [k for k, _ in diff])
  workdir.mkdir(parents=True, exist_ok=True)
  checkpoints.atomic_write_text(path, json.dumps(resolved, indent=1, sort_keys=True))
  sync_processes(f"workdir {workdir} prepared")


_MISSING = object()
# Config fields added after runs had been started, with the value that behaves as the code did
# before the field existed (JSON form). Only these may be absent from a saved config.
ADDED_FIELDS = {"method.eprop_online": True, "sweep": {}, "recipes": {}, "train.frozen_params": [],
                **{f"train.lr_scale.{k}": 1.0 for k in ("W", "b", "B", "W_out", "b_out")},
                "task.curriculum": [], "task.curriculum_stage_epochs": 10, "model.w_init": "gaussian",
                "model.omega_min": 0.1, "model.omega_max": 3.0, "task.pooling": "mean", "train.weight_decay": 0.0,
                # None: the backend's default unroll, 1 on CPU, where the runs before it were made.
                "model.unroll": None,
                # Heidelberg Digits' feature, stand-in and augmentation options, all off.
                "data.standin_voices": "basic", "data.standin_noise_snr_db": None, "data.standin_reverb_rt60": 0.0,
                "data.standin_pad_ms": 0.0, "data.standin_gain_db": 0.0, "data.require_manual_dir": False,
                "data.num_classes": 20, "data.eval_split": "test", "data.validation_speaker": -1,
                "data.cmvn": "none", "data.deltas": 0, "data.delta_width": 9, "data.trim_db": 0.0,
                "data.f_min": 0.0, "data.f_max": 0.0, "data.top_db": 0.0,
                "data.augment": {"time_stretch": 0.0, "band_shift": 0.0, "band_warp": 0.0, "time_masks": 0,
                                 "time_mask_width": 0, "freq_masks": 0, "freq_mask_width": 0, "noise_std": 0.0}}


# Config fields renamed after runs had been started: old dotted name -> new one, same meaning.
RENAMED_FIELDS = {"train.w_lr_scale": "train.lr_scale.W"}


def renamed_fields(saved: dict) -> dict:
  """A saved config (JSON form) with each field of ``RENAMED_FIELDS`` moved to its new name."""
  out = json.loads(json.dumps(saved))
  for old, new in RENAMED_FIELDS.items():
    *old_parents, old_leaf = old.split(".")
    node = out
    for part in old_parents:
      node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or old_leaf not in node:
      continue
    value = node.pop(old_leaf)
    *parents, leaf = new.split(".")
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def with_added_fields(saved: dict) -> dict:
  """A saved config (JSON form), renamed fields under their new names and every field of
  ``ADDED_FIELDS`` it predates at that value."""
  out = renamed_fields(saved)
  for dotted, value in ADDED_FIELDS.items():
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node.setdefault(leaf, value)
  return out


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

"""Checks a whole config before any compute; errors name the field (``config.model.dt``).

Each field alone is checked by its declaration (``experiments/schema.py``); here are the order of the
checks and those that span fields: the shared relations, the task's, and each recipe and sweep
setting as the run it stands for.
"""
from __future__ import annotations

from experiments import base_config, recipes, sweep, tasks
from experiments.schema import check


def validate_config(config) -> None:
  """Raises ValueError naming the first invalid field."""
  if "task" not in config or "name" not in config.task:
    raise ValueError("config.task.name is missing")
  task = tasks.get(config.task.name)
  check(config, base_config.declarations(task.name))
  base_config.check_relations(config)
  task.validate_config(config)
  recipes.validate(config)
  for method in config.methods:  # each method's recipe must give a valid run
    changes = recipes.fields(config, method)
    if changes:
      try:
        validate_config(recipes.apply(config, method))
      except ValueError as e:
        raise ValueError(f"config.recipes.{method}: {e}") from None
      clash = sorted(set(changes) & set(config.sweep or {}))
      if clash:
        raise ValueError(f"config.sweep sweeps {clash}, which config.recipes.{method} sets: drop one of them")
  all_settings = sweep.settings(config)
  if all_settings[0].values:  # each setting must be a valid run of its own
    for s in all_settings:
      try:
        validate_config(sweep.setting_config(config, s))
      except ValueError as e:
        raise ValueError(f"config.sweep: setting {s.label}: {e}") from None
      if "train.clip_norm" in s.values and s.values["train.clip_norm"] <= 0:
        raise ValueError(f"config.sweep['train.clip_norm']: {s.values['train.clip_norm']!r}; a swept clip norm must "
                         "be > 0 (0 turns clipping off, which changes the program: run it separately)")
      if "method.eps" in s.values and s.values["method.eps"] <= 0:
        raise ValueError(f"config.sweep['method.eps']: {s.values['method.eps']!r} must be > 0")

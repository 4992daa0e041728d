"""Vmapped hyperparameter sweeps: ``config.sweep`` maps numeric fields to the values to try, and
every combination trains beside the seeds, as one more vmapped axis of the same jitted program.

    python -m experiments.main --config=experiments/copy_paste.py \\
        --config.sweep="{'train.lr': (3e-3, 1e-3), 'train.lr_scale.B': (1, 0.1, 0.01)}"

trains 6 settings x ``num_seeds`` seeds at once. Replica ``r`` is seed ``r % num_seeds`` of setting
``r // num_seeds``; every setting uses the same seeds (the same initial parameters and batches), so
a setting's numbers are those of a separate run with its values (``tests/test_sweep.py``).

Only fields that are plain numbers in the update can be swept: the optimizer's
(``experiments.optim.NUMERIC_FIELDS``) and the RHEL nudge ``method.eps``. A field that changes the
program's shape (a schedule, T, N, a method) is a separate run.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np

from experiments.optim import NUMERIC_FIELDS

SWEEPABLE = (*(f"train.{f}" for f in NUMERIC_FIELDS), "method.eps")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One combination of a sweep: ``values`` maps dotted config fields to numbers."""
  label: str
  values: dict[str, float]


def settings(config) -> list[Setting]:
  """Every combination of ``config.sweep``, in product order; ``[Setting('', {})]`` without a sweep.

  Raises ValueError naming the sweep field when a key is not sweepable or a value list is bad.
  """
  sweep = config.get("sweep") or {}
  if not isinstance(sweep, dict):
    raise ValueError(f"config.sweep must be a dict {{'dotted.field': (values, ...)}}, got {sweep!r}")
  for field, values in sweep.items():
    if field not in SWEEPABLE:
      raise ValueError(f"config.sweep[{field!r}]: not a sweepable field; sweepable: {list(SWEEPABLE)} (other fields "
                       "change the program's shape: run them separately)")
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)) or not values:
      raise ValueError(f"config.sweep[{field!r}] must be a non-empty tuple of numbers, got {values!r}")
    for v in values:
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"config.sweep[{field!r}]: {v!r} is not a finite number")
    if len(set(values)) != len(values):
      raise ValueError(f"config.sweep[{field!r}] lists a value twice: {values!r}")
  if not sweep:
    return [Setting("", {})]
  fields = list(sweep)
  out = []
  for combo in itertools.product(*(sweep[f] for f in fields)):
    values = {f: float(v) for f, v in zip(fields, combo)}
    out.append(Setting("_".join(f"{f.removeprefix('train.')}={v:g}" for f, v in values.items()), values))
  return out


def with_values(config, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """An unlocked copy of ``config`` with no sweep and each dotted field of ``values`` set."""
  plain = config.to_dict()
  plain.pop("sweep", None)  # its keys are dotted paths, which a ConfigDict refuses
  c = ml_collections.ConfigDict(plain)
  c.sweep = config_dict.FieldReference({}, field_type=object)
  for field, value in values.items():
    *parents, leaf = field.split(".")
    node = c
    for part in parents:
      node = node[part]
    node[leaf] = value
  return c


def setting_config(config, setting: Setting) -> ml_collections.ConfigDict:
  """``config`` with the setting's values in place and no sweep: the run this setting stands for."""
  return with_values(config, setting.values)


def replica_values(all_settings: list[Setting], num_seeds: int, dtype) -> dict[str, Any]:
  """Each swept field's value per replica, ``(num_settings * num_seeds,)`` arrays, setting-major."""
  if not all_settings[0].values:
    return {}
  return {f: jnp.asarray(np.repeat([s.values[f] for s in all_settings], num_seeds), dtype)
          for f in all_settings[0].values}


def optimizer_values(values: dict[str, Any]) -> dict[str, Any]:
  """The optimizer's share of one replica's values, keyed as ``make_optimizer`` takes them."""
  return {f.removeprefix("train."): v for f, v in values.items() if f.startswith("train.")}

"""Checks of single config fields; each error names the field (``config.model.dt``)."""
from __future__ import annotations

import math


def int_field(config, path: str, minimum: int = 1) -> None:
  """``config.<path>`` must be an int >= minimum."""
  value = get_field(config, path)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"config.{path} must be an int >= {minimum}, got {value!r}")


def float_field(config, path: str, *, positive: bool = True, nonnegative: bool = False) -> None:
  """``config.<path>`` must be a finite number (> 0 by default, or >= 0 with ``nonnegative``)."""
  value = get_field(config, path)
  ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
  if ok and positive and not nonnegative:
    ok = value > 0
  if ok and nonnegative:
    ok = value >= 0
  if not ok:
    need = ">= 0" if nonnegative else ("> 0" if positive else "finite")
    raise ValueError(f"config.{path} must be a number {need}, got {value!r}")


def bool_field(config, path: str) -> None:
  value = get_field(config, path)
  if not isinstance(value, bool):
    raise ValueError(f"config.{path} must be True or False, got {value!r}")


def choice_field(config, path: str, choices) -> None:
  value = get_field(config, path)
  if value not in choices:
    raise ValueError(f"config.{path} must be one of {list(choices)}, got {value!r}")


def get_field(config, path: str):
  """``config.<dotted path>``; ValueError naming it when missing."""
  node = config
  for part in path.split("."):
    if part not in node:
      raise ValueError(f"config.{path} is missing")
    node = node[part]
  return node

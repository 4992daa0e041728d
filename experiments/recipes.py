"""Per-method recipes: ``config.recipes.<method>`` holds the fields that differ for that method.

A config's ``train`` and ``method`` sections are the shared recipe (for the paper's tasks, the one
tuned for BPTT and RHEL). A method whose step size must differ, such as e-prop's (docs/tuning.md),
gets a partial copy of those sections::

    c.recipes.eprop = ml_collections.ConfigDict({"train": {"lr": 1e-3, "lr_scale": {"B": 0.01}}})

and trains with the config that :func:`apply` returns. Only ``train.*`` and ``method.*`` fields can
differ per method: everything else defines the task and the model the methods are compared on.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from rhel_jax.methods import METHODS

SECTIONS = ("train", "method")


def _leaves(node, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in node.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(_leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def fields(config, method: str) -> dict[str, Any]:
  """The method's recipe as ``{dotted field: value}`` ({} when it has none)."""
  recipes = config.get("recipes") or {}
  return _leaves(recipes[method]) if method in recipes else {}


def validate(config) -> None:
  """Raises ValueError naming the recipe field that is not a method, section or existing field."""
  recipes = config.get("recipes") or {}
  for method in recipes:
    if method not in METHODS:
      raise ValueError(f"config.recipes.{method}: unknown method; choose from {sorted(METHODS)}")
    if not isinstance(recipes[method], (dict, ml_collections.ConfigDict)):
      raise ValueError(f"config.recipes.{method} must be a ConfigDict of train.* / method.* fields, "
                       f"got {recipes[method]!r}")
    for field, value in fields(config, method).items():
      if field.split(".")[0] not in SECTIONS:
        raise ValueError(f"config.recipes.{method}.{field}: a recipe may set only {', '.join(SECTIONS)} fields")
      node = config
      for part in field.split("."):
        if not isinstance(node, (dict, ml_collections.ConfigDict)) or part not in node:
          raise ValueError(f"config.recipes.{method}.{field}: no such config field config.{field}")
        node = node[part]
      if isinstance(node, (dict, ml_collections.ConfigDict)):
        raise ValueError(f"config.recipes.{method}.{field}: config.{field} is a section, not a field")


def apply(config, method: str):
  """The config that ``method`` trains with: ``config`` with the method's recipe in place and no
  recipes left (a plain run's config).

  Without a recipe, ``config`` itself (so a run without recipes is the run it always was).
  """
  changes = fields(config, method)
  if not changes:
    return config
  from experiments.sweep import with_values  # noqa: PLC0415  (sweep -> optim; keep this module light)
  c = with_values(config, changes)
  c.sweep = dict(config.get("sweep") or {})
  c.recipes = ml_collections.ConfigDict()
  return c


def describe(config, method: str) -> str:
  """A short text of the method's recipe for tables: ``lr=0.001, lr_scale.B=0.01`` or ``shared``."""
  changes = fields(config, method)
  if not changes:
    return "shared"
  fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
  return ", ".join(f"{k.removeprefix('train.')}={fmt(v)}" for k, v in changes.items())

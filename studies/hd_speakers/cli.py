"""Pieces the HD speaker study's modules share: which corpus, comma-separated lists, ``--set`` overrides,
and the accuracy cells of their tables."""
from __future__ import annotations

import argparse
import ast
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np

from experiments import heidelberg_digits


def dev_corpus(corpus: Optional[str] = None, *, flag: Optional[str] = None) -> pathlib.Path:
  """``corpus`` if given, else the dev corpus under ``$RHEL_JAX_SHARED``; exits with a message when
  there is neither (naming the command's ``flag`` for another corpus, if it has one)."""
  if corpus is not None:
    return pathlib.Path(corpus)
  found = heidelberg_digits.dev_corpus_dir()
  if found is None:
    raise SystemExit((f"pass {flag} or " if flag else "")
                     + f"set {heidelberg_digits.SHARED_ENV} to the shared folder that holds data/fsdd_dev")
  return pathlib.Path(found)


def comma_list(kind: Callable, what: str) -> Callable[[str], tuple]:
  """An argparse ``type``: ``"1,2,3"`` -> ``(kind("1"), kind("2"), kind("3"))``, a usage error otherwise."""
  def parse(text: str) -> tuple:
    try:
      values = tuple(kind(v) for v in text.split(","))
    except ValueError:
      raise argparse.ArgumentTypeError(f"comma-separated {what}, got {text!r}") from None
    return values
  return parse


def config_override(text: str) -> tuple[str, object]:
  """An argparse ``type``: ``"data.cmvn=meanvar"`` -> ``("data.cmvn", "meanvar")``; the value is a Python
  literal where it parses as one (``50``, ``0.1``, ``('max',)``), else the plain string."""
  path, sep, raw = text.partition("=")
  if not sep or not path:
    raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (e.g. data.cmvn=meanvar), got {text!r}")
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  return path, value


def apply_overrides(config, overrides) -> None:
  """Sets each ``(dotted field, value)`` on the ConfigDict ``config`` in place, as ``--config.X=V`` would:
  an unknown field or a value of the wrong type exits with a message naming the field."""
  for path, value in overrides:
    names = path.split(".")
    node = config
    for depth, name in enumerate(names):
      if not hasattr(node, "keys") or name not in node:  # an unknown field is an error, not a new one
        raise SystemExit(f"--set {path}: {'.'.join(names[:depth]) or 'the config'} has no field {name!r}")
      if depth < len(names) - 1:
        node = node[name]
    try:
      setattr(node, names[-1], value)
    except (TypeError, ValueError) as e:
      raise SystemExit(f"--set {path}={value!r}: {e}") from None


def percent(accuracies: Sequence[float]) -> str:
  """A table cell: mean ± std over seeds of fractions, in percent (``"64.48 ± 4.91"``)."""
  return f"{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies):.2f}"


def percent_row(groups: Sequence[Sequence[float]]) -> list[str]:
  """One cell per group (:func:`percent`), then the mean of the groups' means (e.g. over speakers)."""
  return [percent(g) for g in groups] + [f"{100 * np.mean([np.mean(g) for g in groups]):.2f}"]

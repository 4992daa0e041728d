"""Command-line pieces the HD dev-corpus benchmarks share: which corpus, and comma-separated lists."""
from __future__ import annotations

import argparse
import pathlib
from typing import Callable, Optional

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

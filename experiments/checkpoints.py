"""Atomic, pickle-free checkpoints (flax.serialization msgpack) and JSON/JSONL helpers."""
from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
from typing import Any, Optional

from absl import logging
from flax import serialization

_CKPT = re.compile(r"^checkpoint_(\d+)\.msgpack$")


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes to a temporary file in the same directory, fsyncs, then renames over ``path``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def atomic_write_text(path: pathlib.Path, text: str) -> None:
  atomic_write_bytes(path, text.encode())


def atomic_savefig(fig, path: pathlib.Path, **kwargs) -> None:
  """``fig.savefig`` to a whole file or none (format from the suffix, as matplotlib does)."""
  import io
  buffer = io.BytesIO()
  fig.savefig(buffer, format=pathlib.Path(path).suffix.lstrip(".") or "png", **kwargs)
  atomic_write_bytes(path, buffer.getvalue())


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
  atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_report(out_dir: pathlib.Path, stem: str, lines: list[str], rows: list[dict]) -> str:
  """A measurement's ``<stem>.md`` (the markdown ``lines``) and ``<stem>.jsonl`` (its ``rows``), both
  atomic, under ``out_dir`` (created); returns the markdown text."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  text = "\n".join(lines) + "\n"
  atomic_write_text(out_dir / f"{stem}.md", text)
  write_jsonl(out_dir / f"{stem}.jsonl", rows)
  return text


def read_jsonl(path: pathlib.Path) -> list[dict]:
  path = pathlib.Path(path)
  if not path.exists():
    return []
  rows = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if line.strip():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{number}: not valid JSON ({e})") from e
  return rows


def wall_seconds(directory: pathlib.Path) -> float:
  """A method's training wall time from its ``timing.jsonl`` (every invocation, resumes included;
  compile time sits in the first epoch of each). NaN when the file is absent or empty."""
  rows = read_jsonl(pathlib.Path(directory) / "timing.jsonl")
  return float(sum(r["seconds"] for r in rows)) if rows else float("nan")


def save_checkpoint(directory: pathlib.Path, epoch: int, target: Any, keep: int = 2) -> None:
  """Saves ``target`` (a pytree of arrays) as ``checkpoint_<epoch>.msgpack``; keeps the newest ``keep``."""
  directory = pathlib.Path(directory)
  atomic_write_bytes(directory / f"checkpoint_{epoch}.msgpack", serialization.to_bytes(target))
  for old in sorted(_epochs(directory))[:-keep]:
    (directory / f"checkpoint_{old}.msgpack").unlink(missing_ok=True)


def restore_latest(directory: pathlib.Path, template: Any) -> tuple[Optional[int], Any]:
  """Newest readable checkpoint as ``(epoch, target)``; ``(None, template)`` when there is none.

  A checkpoint that fails to decode (a truncated or corrupted file) is skipped with a warning and
  the previous one is used.
  """
  directory = pathlib.Path(directory)
  for epoch in sorted(_epochs(directory), reverse=True):
    path = directory / f"checkpoint_{epoch}.msgpack"
    try:
      return epoch, serialization.from_bytes(template, path.read_bytes())
    except Exception as e:  # msgpack raises several types on corrupt input
      logging.warning("checkpoint %s is unreadable (%s: %s); falling back to an older one",
                      path, type(e).__name__, e)
  return None, template


def _epochs(directory: pathlib.Path) -> list[int]:
  if not directory.exists():
    return []
  return [int(m.group(1)) for p in directory.iterdir() if (m := _CKPT.match(p.name))]

"""Checkpoints with Orbax, and atomic, pickle-free JSON/JSONL helpers.

A method's directory holds ``checkpoint_<epoch>/``, written by ``orbax.checkpoint.CheckpointManager``
(arrays in tensorstore's OCDBT format with checksums, metadata in JSON; no pickle). Orbax writes each
checkpoint into a temporary directory and renames it when complete, in the background while training
goes on; the two newest are kept. Every process of a multi-process run takes part in a save and
writes its own shards of the seed-sharded state. Anyone can read a checkpoint back with Orbax alone
(README, "Trained parameters"), or with :func:`restore_params`.

Workdirs from before Orbax hold ``checkpoint_<epoch>.msgpack`` (``flax.serialization``). They still
resume: the newest readable one is read once, the next save is in Orbax's format, and the msgpack
files go once two newer checkpoints exist.

Reports (JSON, markdown, figures) are written by one process: in a multi-process run
(``jax.distributed``) only process 0 writes them (every process holds the same values).
"""
from __future__ import annotations

import json
import logging as py_logging
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any, Optional

import jax
from absl import logging

from experiments.sharding import is_primary, sync_processes

_STEP = re.compile(r"^checkpoint_(\d+)$")            # an Orbax checkpoint (a directory)
_LEGACY = re.compile(r"^checkpoint_(\d+)\.msgpack$")  # a flax.serialization file from before Orbax
PREFIX = "checkpoint"
ITEM = "default"          # the item name Orbax gives a CheckpointManager's single item
UNREADABLE = ".unreadable"  # suffix of a checkpoint set aside because it could not be read


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes to a temporary file in the same directory, fsyncs, then renames over ``path``.

  Only the primary process writes (:func:`is_primary`); the others return at once.
  """
  if not is_primary():
    return
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


# ------------------------------------------------------------------------------------------ checkpoints

_writers: dict[tuple[pathlib.Path, int], Any] = {}  # (directory, keep) -> ocp.CheckpointManager


def _absolute(directory) -> pathlib.Path:
  return pathlib.Path(directory).expanduser().absolute()  # Orbax wants absolute paths


class _OrbaxWarningsOnly(py_logging.Filter):
  """Orbax logs ~50 INFO lines per save through absl; a run's log keeps its warnings and errors."""

  def __init__(self):
    super().__init__()
    import orbax.checkpoint as ocp
    self.package = os.path.dirname(ocp.__file__) + os.sep

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not record.pathname.startswith(self.package)


def _quiet_orbax() -> None:
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _OrbaxWarningsOnly) for f in logger.filters):
    logger.addFilter(_OrbaxWarningsOnly())


def _writer(directory: pathlib.Path, keep: int):
  import orbax.checkpoint as ocp
  key = (directory, keep)
  if key not in _writers:
    _quiet_orbax()
    # cleanup_tmp_directories: a save cut short (SIGKILL) leaves a temporary directory; it goes here.
    _writers[key] = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, step_prefix=PREFIX, cleanup_tmp_directories=True, enable_async_checkpointing=True))
  return _writers[key]


def save_checkpoint(directory: pathlib.Path, epoch: int, target: Any, keep: int = 2) -> None:
  """Saves ``target`` (a pytree of arrays, seed-sharded or not) as ``<directory>/checkpoint_<epoch>/``.

  Returns once the arrays are copied off the devices; Orbax writes them in the background and
  renames the finished checkpoint into place. Only the newest ``keep`` are kept. A checkpoint
  already there at ``epoch`` or later is one :func:`restore_latest` could not read (else the run
  would have resumed from it): it is set aside as ``checkpoint_<epoch>.unreadable``. In a
  multi-process run every process must call this (each writes its shards).
  :func:`wait_until_finished` waits for the write (:func:`restore_latest` calls it); call it before
  the process exits, since Python stops Orbax's background threads before ``atexit`` handlers run.
  """
  import orbax.checkpoint as ocp
  directory = _absolute(directory)
  manager = _writer(directory, keep)
  manager.wait_until_finished()
  stale = [path for e, path in checkpoint_paths(directory) if e >= epoch]
  if stale:
    if is_primary():
      for path in stale:
        aside = path.with_name(path.name + UNREADABLE)
        logging.warning("setting aside %s as %s before saving epoch %d", path, aside.name, epoch)
        if aside.is_dir():
          shutil.rmtree(aside)
        path.replace(aside)
    sync_processes(f"checkpoints set aside in {directory}")
  manager.reload()  # the directory may have changed since the manager last looked
  _prune_legacy(directory, keep)
  manager.save(epoch, args=ocp.args.StandardSave(target), force=True)


def wait_until_finished(directory: Optional[pathlib.Path] = None) -> None:
  """Waits for the background saves into ``directory`` (all directories when None) to complete."""
  directory = None if directory is None else _absolute(directory)
  for (path, keep), manager in list(_writers.items()):
    if directory is None or path == directory:
      manager.wait_until_finished()
      _prune_legacy(path, keep)


def checkpoint_paths(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
  """``(epoch, path)`` of every complete checkpoint in ``directory``, newest first (an Orbax directory
  before a legacy ``.msgpack`` of the same epoch). Orbax's temporary directories are not listed."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  found = []
  for p in directory.iterdir():
    if (m := _STEP.match(p.name)) and p.is_dir():
      found.append((int(m.group(1)), 1, p))
    elif (m := _LEGACY.match(p.name)) and p.is_file():
      found.append((int(m.group(1)), 0, p))
  return [(epoch, p) for epoch, _, p in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


def read_checkpoint(path: pathlib.Path, template: Any = None) -> Any:
  """One checkpoint (an Orbax ``checkpoint_<epoch>/`` or a legacy ``.msgpack``) as a pytree.

  With a ``template`` (a pytree of arrays shaped as saved) the result has its structure, dtypes
  and shardings, and a shape or structure that differs is an error. Without one, an Orbax
  checkpoint comes back as nested dicts and lists of arrays (tuples become lists, empty nodes None),
  a msgpack one as nested dicts of numpy arrays.
  """
  path = pathlib.Path(path)
  if path.suffix == ".msgpack":
    from flax import serialization
    data = path.read_bytes()
    return serialization.msgpack_restore(data) if template is None else serialization.from_bytes(template, data)
  import orbax.checkpoint as ocp
  _quiet_orbax()
  item = _absolute(path) / ITEM
  handler = ocp.StandardCheckpointHandler()
  if template is None:
    # Saved sharded over devices this process may not have: read each array whole onto one device.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    template = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            handler.metadata(item).tree,
                            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
  with ocp.Checkpointer(handler) as checkpointer:
    return checkpointer.restore(item, args=ocp.args.StandardRestore(template))


def restore_latest(directory: pathlib.Path, template: Any) -> tuple[Optional[int], Any]:
  """Newest readable checkpoint as ``(epoch, target)``; ``(None, template)`` when there is none.

  ``template``: the pytree to restore into (the run's initial state); the result takes its
  structure, dtypes and shardings. A checkpoint that cannot be read (a truncated or corrupted file,
  which Orbax's checksums catch; a shape or structure that differs from the template) is reported
  by name and skipped for the previous one. Nothing in ``directory`` is changed.
  """
  wait_until_finished(directory)
  found = _newest_readable(directory, template)
  if found is None:
    return None, template
  epoch, path, target = found
  if path.suffix == ".msgpack":
    logging.info("resuming from %s, written before Orbax; the next checkpoints are Orbax directories", path)
  return epoch, target


def restore_params(directory: pathlib.Path) -> tuple[int, dict]:
  """A method directory's newest readable checkpoint as ``(epoch, params)``: params a dict of numpy
  arrays, each with the seeds on its leading axis (``W``: ``(num_seeds, N, N)``)."""
  import numpy as np
  found = _newest_readable(directory, None)
  if found is None:
    raise FileNotFoundError(f"{directory}: no readable checkpoint_<epoch>/ (or checkpoint_<epoch>.msgpack)")
  epoch, _, state = found
  return epoch, jax.tree.map(np.asarray, state["params"])


def _newest_readable(directory: pathlib.Path, template: Any) -> Optional[tuple[int, pathlib.Path, Any]]:
  for epoch, path in checkpoint_paths(directory):
    try:
      return epoch, path, read_checkpoint(path, template)
    except Exception as e:  # tensorstore, JSON and msgpack raise several types on corrupt input
      message = str(e).strip().splitlines()[0] if str(e).strip() else ""
      logging.warning("checkpoint %s is unreadable (%s: %s); falling back to an older one",
                      path, type(e).__name__, message)
  return None


def _prune_legacy(directory: pathlib.Path, keep: int) -> None:
  """Removes msgpack checkpoints once ``keep`` newer complete ones exist (the primary process)."""
  if not is_primary():
    return
  found = checkpoint_paths(directory)
  kept = {path for _, path in found[:keep]}
  for _, path in found:
    if path.suffix == ".msgpack" and path not in kept:
      path.unlink(missing_ok=True)

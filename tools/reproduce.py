"""Evidence that a refactor changes no result bit for bit: gradients of every method, and whole runs.

Usage (run from the root of the new checkout, with one Python environment, on one machine: XLA's
results may differ between jax/jaxlib versions and between devices, so only the code may differ)::

    git worktree add /tmp/old <rev>                                 # the revision before the refactor

    # 1. Gradients of every method in rhel_jax.METHODS on four fixed problems. --code runs the rhel_jax
    #    under that directory (the old revision needs no tools/ of its own). About a minute on one core,
    #    nearly all XLA compilation of 24 programs; with --compilation-cache, programs whose HLO did not
    #    change are not compiled again, and a rerun takes seconds.
    python -m tools.reproduce gradients --code /tmp/old --out /tmp/repro/grads_old --compilation-cache /tmp/repro/xla
    python -m tools.reproduce gradients --out /tmp/repro/grads_new --compilation-cache /tmp/repro/xla
    python -m tools.reproduce compare /tmp/repro/grads_old /tmp/repro/grads_new      # exit 1 on any bit

    # 2. The quick Copy-Paste protocol at both revisions (~10 min each on 2 CPU cores;
    #    add --config.num_epochs=2 to both for a smoke check), compared file by file.
    #    Use this checkout's Python (the old worktree has no virtual environment of its own).
    (cd /tmp/old && python -m experiments.main --config=experiments/copy_paste.py:quick --workdir=/tmp/repro/run_old)
    python -m experiments.main --config=experiments/copy_paste.py:quick --workdir=/tmp/repro/run_new
    python -m tools.reproduce runs /tmp/repro/run_old /tmp/repro/run_new            # exit 1 on any bit
    # Fields the new code adds (e.g. HD's per-epoch validation metrics) can be allowed by name; every
    # value both sides have is still compared exactly:
    python -m tools.reproduce runs OLD NEW --new-keys 'val_.*|best_val_epoch|.*_at_best_val'

    git worktree remove /tmp/old

``gradients`` writes one ``<problem>.npz`` per problem (the problem's inputs, targets, mask and
parameters under ``problem/...``, then ``<method>/loss`` and ``<method>/grads/<name>`` for every
method; ``np.savez``, no pickle) and ``manifest.json`` (git revision, jax version, backend, methods,
problems). It uses only the public API (``rhel_jax.METHODS``'s keys, ``init_params``, ``ModelConfig``,
``gradient`` with no options, so the defaults apply) and ``jax.random``; the problems:

* ``bce_f32``: Copy-Paste-like, float32: batch 8, T 60, 5 inputs, 16 neurons, 3 outputs, targets in
  {0, 1}, mask ones, ``loss="bce"``;
* ``bce_f64``: the same in float64 (run with x64 enabled);
* ``bce_f32_exact``: the float32 problem with ``ModelConfig(exact_reversible=True)``;
* ``ce_mean_f32``: classification, float32, integer labels (batch,) and a (batch, T) mask of
  variable lengths, ``loss="ce_mean"``.

The float32 problems run with x64 disabled and the float64 one with it enabled, whatever the caller's
setting. ``compare A B`` reports, per problem, method and tensor, identical bits or the largest
absolute and ulp differences; a method or problem present on one side only is listed; it exits 1 on
any difference in what both sides have. ``runs A B`` compares two experiment workdirs: every
``metrics.jsonl``, ``alignment.jsonl``, ``final.json`` and ``results.json`` (its ``wall_seconds``
ignored) value for value, exactly, and each checkpoint epoch both sides kept: Orbax's
``checkpoint_<epoch>/`` array by array (name, dtype, shape and bits; its files hold timestamps), two
``checkpoint_<epoch>.msgpack`` (from before Orbax) byte for byte, and one of each (an old revision
against a new one) array by array; ``timing.jsonl``, ``invocations.jsonl``, ``results.md`` and
``config.json`` hold wall times, commands or revisions and are not compared.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
from typing import Any, Iterable, Optional

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMAND = "python -m tools.reproduce"
MANIFEST = "manifest.json"
PROBLEM_PREFIX = "problem"


@dataclasses.dataclass(frozen=True)
class Problem:
  name: str
  loss: str
  dtype: str          # "float32" or "float64"
  exact: bool = False
  batch: int = 8
  n_in: int = 5
  n_hidden: int = 16
  n_out: int = 3
  seed: int = 0


PROBLEMS = (
    Problem("bce_f32", "bce", "float32"),
    Problem("bce_f64", "bce", "float64"),
    Problem("bce_f32_exact", "bce", "float32", exact=True),
    Problem("ce_mean_f32", "ce_mean", "float32", seed=1),
)
DEFAULT_STEPS = 60


# ------------------------------------------------------------------------------------------------ helpers

def git_revision(directory: pathlib.Path) -> str:
  """``git rev-parse --short HEAD`` of ``directory``, with ``-dirty`` if tracked files outside docs/ changed."""
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=directory, capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs"],
                           cwd=directory, capture_output=True, text=True).stdout.strip()
    return rev + ("-dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def _x64(enabled: bool):
  """Context manager setting jax_enable_x64, across jax versions."""
  import jax
  state = getattr(jax, "enable_x64", None)
  if callable(state):
    return state(enabled)
  from jax import experimental  # older jax
  return experimental.enable_x64() if enabled else experimental.disable_x64()


def _flatten(tree, prefix: str) -> dict[str, np.ndarray]:
  """``{prefix/path/of/leaf: array}`` for any pytree (dicts, lists, records)."""
  import jax
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    parts = []
    for key in path:
      for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
          parts.append(str(getattr(key, attr)))
          break
      else:
        parts.append(str(key))
    name = "/".join([prefix, *parts])
    if name in out:
      raise ValueError(f"two leaves named {name!r}")
    out[name] = np.asarray(leaf)
  return out


def _import_rhel_jax(code: pathlib.Path):
  """Imports ``rhel_jax`` from ``code`` (put first on sys.path), and checks that it came from there."""
  code = code.resolve()
  if "rhel_jax" in sys.modules:
    module = sys.modules["rhel_jax"]
  else:
    sys.path.insert(0, str(code))
    import rhel_jax as module
  origin = pathlib.Path(module.__file__).resolve()
  if code not in origin.parents:
    raise RuntimeError(f"rhel_jax was imported from {origin}, not from {code}")
  return module


# ------------------------------------------------------------------------------------------------ gradients

def make_problem(rhel_jax, problem: Problem, steps: int):
  """``(params, model, inputs, targets, mask)`` from ``jax.random`` and the public init only.

  Generated by one jitted function (op-by-op, its few dozen small ops would each be compiled), from a key
  of the ``rbg`` implementation: XLA:CPU takes seconds to compile threefry's generator, ~1 s this one.
  """
  import jax
  model = rhel_jax.ModelConfig(exact_reversible=problem.exact)
  data = jax.jit(_problem_data, static_argnums=(0, 1, 2))(rhel_jax, problem, steps)
  return data[0], model, *data[1:]


def _problem_data(rhel_jax, problem: Problem, steps: int):
  import jax
  import jax.numpy as jnp
  dtype = jnp.dtype(problem.dtype)
  k_p, k_x, k_y = jax.random.split(jax.random.key(problem.seed, impl="rbg"), 3)
  params = rhel_jax.init_params(k_p, problem.n_in, problem.n_hidden, problem.n_out, dtype=dtype)
  inputs = jax.random.normal(k_x, (problem.batch, steps, problem.n_in), dtype)
  if problem.loss == "ce_mean":
    targets = jax.random.randint(k_y, (problem.batch,), 0, problem.n_out)
    lengths = steps - jnp.arange(problem.batch) % 3  # variable lengths; padded tails masked out
    mask = (jnp.arange(steps)[None, :] < lengths[:, None]).astype(dtype)
  else:
    targets = jax.random.bernoulli(k_y, 0.5, (problem.batch, steps, problem.n_out)).astype(dtype)
    mask = jnp.ones((problem.batch, steps), dtype)
  return params, inputs, targets, mask


def compute_problem(rhel_jax, problem: Problem, steps: int, methods: Iterable[str]) -> dict[str, np.ndarray]:
  """The problem's data and every method's loss and gradient, as flat named arrays."""
  with _x64(problem.dtype == "float64"):
    params, model, inputs, targets, mask = make_problem(rhel_jax, problem, steps)
    arrays = _flatten({"inputs": inputs, "targets": targets, "mask": mask, "params": params}, PROBLEM_PREFIX)
    for method in methods:
      loss, grads = rhel_jax.gradient(method, params, model, inputs, targets, mask, loss=problem.loss)
      arrays.update(_flatten({"loss": loss, "grads": grads}, method))
  return arrays


def write_gradients(out: pathlib.Path, *, code: pathlib.Path = ROOT, steps: int = DEFAULT_STEPS,
                    problems: Optional[Iterable[str]] = None, methods: Optional[Iterable[str]] = None) -> dict:
  """Writes ``<problem>.npz`` per problem and ``manifest.json`` into ``out``; returns the manifest."""
  rhel_jax = _import_rhel_jax(code)
  import jax
  all_methods = list(rhel_jax.METHODS)
  methods = all_methods if methods is None else list(methods)
  unknown = sorted(set(methods) - set(all_methods))
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; rhel_jax.METHODS has {all_methods}")
  by_name = {p.name: p for p in PROBLEMS}
  if problems is not None and set(problems) - set(by_name):
    raise ValueError(f"unknown problem(s) {sorted(set(problems) - set(by_name))}; choose from {list(by_name)}")
  chosen = [by_name[n] for n in problems] if problems is not None else list(PROBLEMS)
  out.mkdir(parents=True, exist_ok=True)
  for problem in chosen:
    arrays = compute_problem(rhel_jax, problem, steps, methods)
    with tempfile.TemporaryFile() as f:  # np.savez into memory, then one atomic write
      np.savez(f, **arrays)
      f.seek(0)
      atomic_write_bytes(out / f"{problem.name}.npz", f.read())
  manifest = {
      "revision": git_revision(code),
      "rhel_jax": str(pathlib.Path(rhel_jax.__file__).resolve().parent),
      "jax": jax.__version__,
      "jaxlib": getattr(getattr(jax, "lib", None), "__version__", None) or _jaxlib_version(),
      "numpy": np.__version__,
      "python": platform.python_version(),
      "backend": jax.default_backend(),
      "device": str(jax.devices()[0].device_kind),
      "methods": methods,
      "steps": steps,
      "problems": {p.name: {**dataclasses.asdict(p), "steps": steps} for p in chosen},
  }
  atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
  return manifest


def enable_compilation_cache(directory: pathlib.Path) -> None:
  """Caches every compiled program on disk (keyed by its HLO, the compile options and the jax version)."""
  import jax
  directory.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(directory.resolve()))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _jaxlib_version() -> Optional[str]:
  try:
    import jaxlib
    return jaxlib.__version__
  except (ImportError, AttributeError):
    return None


# ------------------------------------------------------------------------------------------------ compare

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
  """Largest number of representable floats between corresponding entries (same float dtype)."""
  bits = 8 * a.dtype.itemsize
  def ordered(x):
    u = np.ascontiguousarray(x).view(_UINT[a.dtype.itemsize]).ravel().astype(object)
    sign = 1 << (bits - 1)
    return [(-(v - sign) if v >= sign else v) for v in u]  # sign-magnitude -> a monotone integer line
  return max((abs(x - y) for x, y in zip(ordered(a), ordered(b))), default=0)


def compare_arrays(a: np.ndarray, b: np.ndarray) -> Optional[str]:
  """None if same dtype, shape and bits; else a short description of the difference."""
  if a.dtype != b.dtype or a.shape != b.shape:
    return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
  if np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes():
    return None
  if np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize in _UINT:
    with np.errstate(invalid="ignore", over="ignore"):
      diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    n = int(np.sum(a.view(_UINT[a.dtype.itemsize]) != b.view(_UINT[a.dtype.itemsize])))
    return f"{n}/{a.size} differ; max abs {np.nanmax(diff) if diff.size else 0:.3g}, max ulp {ulp_distance(a, b)}"
  return f"{int(np.sum(a != b))}/{a.size} differ"


def _group(keys: Iterable[str]) -> dict[str, list[str]]:
  groups: dict[str, list[str]] = {}
  for key in sorted(keys):
    groups.setdefault(key.split("/")[0], []).append(key)
  return groups


def _load_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def compare_gradients(a: pathlib.Path, b: pathlib.Path) -> tuple[list[tuple[str, str, str, str]], int, int]:
  """Rows ``(problem, method, tensor, result)``, the number of differing tensors in what both sides have,
  and the number of (problem, method) pairs both sides have.

  A problem whose data and common methods are all identical is one row; each differing tensor, and each
  method or problem on one side only, is a row of its own.
  """
  rows, differences, common = [], 0, 0
  problems_a = {p.stem for p in a.glob("*.npz")}
  problems_b = {p.stem for p in b.glob("*.npz")}
  for problem in sorted(problems_a | problems_b):
    if problem not in problems_a or problem not in problems_b:
      rows.append((problem, "*", "*", f"only in {'A' if problem in problems_a else 'B'}"))
      continue
    arrays_a, arrays_b = _load_npz(a / f"{problem}.npz"), _load_npz(b / f"{problem}.npz")
    groups_a, groups_b = _group(arrays_a), _group(arrays_b)
    problem_rows, identical_methods, identical_tensors = [], [], 0
    for method in sorted(set(groups_a) | set(groups_b), key=lambda m: (m != PROBLEM_PREFIX, m)):
      if method not in groups_a or method not in groups_b:
        problem_rows.append((problem, method, "*", f"only in {'A' if method in groups_a else 'B'}"))
        continue
      common += method != PROBLEM_PREFIX
      keys = sorted(set(groups_a[method]) | set(groups_b[method]))
      failed = []
      for key in keys:
        tensor = key.split("/", 1)[1]
        if key not in arrays_a or key not in arrays_b:
          failed.append((tensor, f"only in {'A' if key in arrays_a else 'B'}"))
        else:
          result = compare_arrays(arrays_a[key], arrays_b[key])
          if result is not None:
            failed.append((tensor, result))
      differences += len(failed)
      problem_rows += [(problem, method, tensor, f"**{result}**") for tensor, result in failed]
      if not failed:
        identical_methods.append(method)
        identical_tensors += len(keys)
    if identical_methods:
      data = PROBLEM_PREFIX in identical_methods
      names = [m for m in identical_methods if m != PROBLEM_PREFIX]
      what = ("inputs, params; " if data else "") + (", ".join(names) if names else "no method")
      rows.append((problem, what, f"{identical_tensors} tensors", "identical bits"))
    rows += problem_rows
  return rows, differences, common


def _markdown(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _manifest(directory: pathlib.Path) -> dict:
  path = directory / MANIFEST
  return json.loads(path.read_text()) if path.is_file() else {}


def cmd_compare(a: pathlib.Path, b: pathlib.Path) -> int:
  for d in (a, b):
    if not d.is_dir():
      print(f"error: {d} is not a directory", file=sys.stderr)
      return 2
  ma, mb = _manifest(a), _manifest(b)
  print(f"A: {a} (revision {ma.get('revision', '?')}, jax {ma.get('jax', '?')}, {ma.get('backend', '?')})")
  print(f"B: {b} (revision {mb.get('revision', '?')}, jax {mb.get('jax', '?')}, {mb.get('backend', '?')})")
  for key in ("jax", "jaxlib", "backend", "device", "steps"):
    if ma.get(key) != mb.get(key):
      print(f"warning: {key} differs ({ma.get(key)!r} vs {mb.get(key)!r}): not only the code differs")
  rows, differences, common = compare_gradients(a, b)
  print()
  print(_markdown(("problem", "method", "tensor", "A vs B"), rows))
  print()
  if not common:
    print("FAIL: no (problem, method) in common to compare")
    return 1
  if differences:
    print(f"FAIL: {differences} tensor(s) differ")
    return 1
  print(f"OK: identical bits in all {common} (problem, method) pairs both sides have")
  return 0


# ------------------------------------------------------------------------------------------------ runs

RESULT_FILES = ("metrics.jsonl", "alignment.jsonl", "final.json", "results.json")
IGNORED_KEYS = frozenset({"wall_seconds"})
# An Orbax checkpoint (a directory; its files carry timestamps, so its arrays are compared) or one
# written before Orbax (a flax msgpack file, compared byte for byte).
_CHECKPOINT = re.compile(r"^(?P<stem>checkpoint_\d+)(?P<msgpack>\.msgpack)?$")


def _same_scalar(x: Any, y: Any) -> bool:
  if isinstance(x, float) and isinstance(y, float):
    if math.isnan(x) or math.isnan(y):
      return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)
  return type(x) is type(y) and x == y


def json_differences(x: Any, y: Any, where: str = "") -> list[str]:
  """Paths at which two parsed JSON values differ (exactly; NaN equals NaN; keys in IGNORED_KEYS skipped)."""
  if isinstance(x, dict) and isinstance(y, dict):
    out = []
    for key in sorted(set(x) | set(y)):
      if key in IGNORED_KEYS:
        continue
      if key not in x or key not in y:
        out.append(f"{where}.{key}: only in {'A' if key in x else 'B'}")
      else:
        out += json_differences(x[key], y[key], f"{where}.{key}")
    return out
  if isinstance(x, list) and isinstance(y, list):
    if len(x) != len(y):
      return [f"{where}: length {len(x)} vs {len(y)}"]
    out = []
    for i, (u, v) in enumerate(zip(x, y)):
      out += json_differences(u, v, f"{where}[{i}]")
    return out
  return [] if _same_scalar(x, y) else [f"{where}: {x!r} vs {y!r}"]


def _read_json_any(path: pathlib.Path) -> Any:
  text = path.read_text()
  if path.suffix == ".jsonl":
    return [json.loads(line) for line in text.splitlines() if line.strip()]
  return json.loads(text)


def _row_label(value: Any, where: str) -> str:
  """``[3].test_loss`` -> ``[3] (epoch 1, seed 0).test_loss`` for JSONL rows with epoch/seed fields."""
  m = re.match(r"^\[(\d+)\]", where)
  if m and isinstance(value, list) and int(m.group(1)) < len(value) and isinstance(value[int(m.group(1))], dict):
    row = value[int(m.group(1))]
    tags = ", ".join(f"{k} {row[k]}" for k in ("epoch", "seed") if k in row)
    if tags:
      return f"{m.group(0)} ({tags}){where[m.end():]}"
  return where


def _is_checkpoint(p: pathlib.Path) -> bool:
  m = _CHECKPOINT.match(p.name)
  return m is not None and (p.is_file() if m["msgpack"] else p.is_dir())


def _find(root: pathlib.Path) -> set[str]:
  return {p.relative_to(root).as_posix() for p in root.rglob("*")
          if (p.is_file() and p.name in RESULT_FILES) or _is_checkpoint(p)}


def _checkpoint_key(rel: str) -> str:
  """``bptt/checkpoint_4.msgpack`` and ``bptt/checkpoint_4`` are the same epoch's checkpoint."""
  path = pathlib.PurePosixPath(rel)
  m = _CHECKPOINT.match(path.name)
  return (path.parent / m["stem"]).as_posix() if m else rel


def _flat_arrays(tree: Any, where: str = "") -> dict[str, np.ndarray]:
  """``{'params/W': array, 'opt_state/1/0/count': array, ...}``: dict keys and sequence indices
  joined by '/', so Orbax's tree (tuples as lists) and flax msgpack's (tuples as dicts keyed
  '0', '1', ...) give the same names; empty nodes give none."""
  if isinstance(tree, dict):
    items = tree.items()
  elif isinstance(tree, (list, tuple)):
    items = ((str(i), v) for i, v in enumerate(tree))
  elif tree is None:
    return {}
  else:
    return {where: np.asarray(tree)}
  out = {}
  for key, value in items:
    out.update(_flat_arrays(value, f"{where}/{key}" if where else str(key)))
  return out


def compare_checkpoints(path_a: pathlib.Path, path_b: pathlib.Path, max_listed: int = 3) -> tuple[int, Optional[str]]:
  """``(arrays in A, None)`` if every array of the two checkpoints (either format) has the same name,
  dtype, shape and bits; else ``(arrays in A, what differs)``."""
  from experiments.checkpoints import read_checkpoint
  a, b = _flat_arrays(read_checkpoint(path_a)), _flat_arrays(read_checkpoint(path_b))
  diffs = [f"{k}: only in {'A' if k in a else 'B'}" for k in sorted(set(a) ^ set(b))]
  diffs += [f"{k}: {d}" for k in sorted(set(a) & set(b)) if (d := compare_arrays(a[k], b[k])) is not None]
  if not diffs:
    return len(a), None
  more = f"; ... {len(diffs) - max_listed} more" if len(diffs) > max_listed else ""
  return len(a), f"{len(diffs)} array(s) differ: " + "; ".join(diffs[:max_listed]) + more


_ONLY_IN_B = re.compile(r"^(?P<where>.*)\.(?P<key>[^.\[\]]+): only in B$")


def compare_runs(a: pathlib.Path, b: pathlib.Path, max_listed: int = 3, new_keys: Optional[str] = None
                 ) -> tuple[list[tuple[str, str]], int]:
  """Rows ``(file, result)`` and the number of files that differ.

  ``new_keys``: a regular expression; JSON keys present only in B whose name matches it in full
  (fields the new code adds, e.g. ``val_.*``) are listed but are not differences. Every key both
  sides have is still compared exactly.
  """
  added = re.compile(new_keys) if new_keys else None
  # One entry per result file, and per checkpoint epoch whatever its format (old code wrote msgpack).
  names_a = {_checkpoint_key(rel): rel for rel in _find(a)}
  names_b = {_checkpoint_key(rel): rel for rel in _find(b)}
  rows, differences = [], 0
  for key in sorted(names_a.keys() | names_b.keys()):
    rel_a, rel_b = names_a.get(key), names_b.get(key)
    rel = rel_a if rel_a == rel_b or rel_b is None else rel_b if rel_a is None else f"{rel_a} vs {rel_b}"
    checkpoint = _CHECKPOINT.match(pathlib.PurePosixPath(key).name) is not None
    if rel_a is None or rel_b is None:
      side = "A" if rel_b is None else "B"
      if checkpoint:
        rows.append((rel, f"only in {side} (not compared)"))
      else:
        rows.append((rel, f"**only in {side}**"))
        differences += 1
      continue
    if checkpoint:
      if rel_a.endswith(".msgpack") and rel_b.endswith(".msgpack"):
        da, db = (a / rel_a).read_bytes(), (b / rel_b).read_bytes()
        if da == db:
          rows.append((rel, f"identical bytes (sha256 {hashlib.sha256(da).hexdigest()[:12]})"))
        else:
          rows.append((rel, f"**bytes differ** ({len(da)} vs {len(db)} bytes)"))
          differences += 1
        continue
      try:
        count, diff = compare_checkpoints(a / rel_a, b / rel_b)
      except Exception as e:  # an unreadable checkpoint on either side
        diff = f"unreadable ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})"
      if diff is None:
        rows.append((rel, f"identical arrays ({count})"))
      else:
        rows.append((rel, f"**{diff}**"))
        differences += 1
      continue
    va, vb = _read_json_any(a / rel), _read_json_any(b / rel)
    diffs = json_differences(va, vb)
    new_in_b = []
    if added is not None:
      new_in_b = sorted({m["key"] for d in diffs if (m := _ONLY_IN_B.match(d)) and added.fullmatch(m["key"])})
      diffs = [d for d in diffs if not ((m := _ONLY_IN_B.match(d)) and added.fullmatch(m["key"]))]
    if diffs:
      differences += 1
      listed = "; ".join(_row_label(va, d) for d in diffs[:max_listed])
      more = f"; ... {len(diffs) - max_listed} more" if len(diffs) > max_listed else ""
      rows.append((rel, f"**{len(diffs)} value(s) differ**: {listed}{more}"))
    else:
      n = f"{len(va)} row{'s' * (len(va) != 1)}" if isinstance(va, list) else "all values"
      rows.append((rel, f"identical ({n})" + (f"; new in B: {', '.join(new_in_b)}" if new_in_b else "")))
  return rows, differences


def cmd_runs(a: pathlib.Path, b: pathlib.Path, new_keys: Optional[str] = None) -> int:
  for d in (a, b):
    if not d.is_dir():
      print(f"error: {d} is not a directory", file=sys.stderr)
      return 2
  rows, differences = compare_runs(a, b, new_keys=new_keys)
  print(f"A: {a}\nB: {b}\n" + (f"JSON keys only in B that may be new: `{new_keys}`\n" if new_keys else ""))
  print(_markdown(("file", "A vs B"), rows))
  print()
  compared = sum(1 for _, r in rows if not r.startswith(("only in", "**only in")))
  if not compared:
    print("FAIL: no result files in common")
    return 1
  if differences:
    print(f"FAIL: {differences} file(s) differ")
    return 1
  print(f"OK: {compared} file(s) identical")
  return 0


# ------------------------------------------------------------------------------------------------ CLI

def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  g = sub.add_parser("gradients", help="write every method's loss and gradients on the fixed problems")
  g.add_argument("--out", required=True, type=pathlib.Path)
  g.add_argument("--code", type=pathlib.Path, default=ROOT,
                 help="checkout whose rhel_jax to run (default: this one), e.g. a `git worktree` of the old revision")
  g.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"sequence length T (default {DEFAULT_STEPS})")
  g.add_argument("--problems", default=None, help=f"comma-separated subset of {[p.name for p in PROBLEMS]}")
  g.add_argument("--methods", default=None, help="comma-separated subset of rhel_jax.METHODS (default: all)")
  g.add_argument("--compilation-cache", type=pathlib.Path, default=None,
                 help="JAX persistent compilation cache directory: a rerun whose programs are unchanged skips "
                      "XLA compilation (most of the ~1 min), e.g. when checking the new revision again")
  c = sub.add_parser("compare", help="bitwise comparison of two `gradients` output directories")
  c.add_argument("a", type=pathlib.Path)
  c.add_argument("b", type=pathlib.Path)
  r = sub.add_parser("runs", help="bitwise comparison of two experiment workdirs")
  r.add_argument("a", type=pathlib.Path)
  r.add_argument("b", type=pathlib.Path)
  r.add_argument("--new-keys", default=None,
                 help="regular expression of JSON keys the new code adds (only in B): listed, not failures, "
                      "e.g. 'val_.*|best_val_epoch|.*_at_best_val'")
  args = parser.parse_args(argv)
  if args.command == "gradients":
    if args.compilation_cache is not None:
      enable_compilation_cache(args.compilation_cache)
    split = lambda s: None if s is None else [x for x in s.split(",") if x]
    manifest = write_gradients(args.out, code=args.code, steps=args.steps, problems=split(args.problems),
                               methods=split(args.methods))
    print(f"wrote {len(manifest['problems'])} problem(s) x {len(manifest['methods'])} method(s) to {args.out} "
          f"(revision {manifest['revision']}, jax {manifest['jax']}, {manifest['backend']})")
    return 0
  if args.command == "compare":
    return cmd_compare(args.a, args.b)
  return cmd_runs(args.a, args.b, args.new_keys)


if __name__ == "__main__":
  sys.exit(main())

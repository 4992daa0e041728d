"""Training: every configured method over ``num_seeds`` seeds in one vmapped, jitted program.

``run_experiment(config, workdir)`` is the library entry point (``main.py`` only parses flags).
Per method, one jitted function runs a whole epoch (a ``lax.scan`` of optimizer steps) for all
seeds at once; the Python loop around it logs, evaluates, measures gradient alignment and
checkpoints. Re-running with the same workdir resumes from the newest checkpoint.

Workdir layout::

    config.json                 resolved config (a different config is refused)
    invocations.jsonl           command, git revision and start time of every invocation (resumes too)
    <method>/metrics.jsonl      one row per (epoch, seed): train loss, test metrics, diverged
    <method>/alignment.jsonl    one row per (alignment epoch, seed): cosine with BPTT per tensor
    <method>/checkpoint_<epoch>.msgpack   params + optimizer state + divergence flags
    <method>/timing.jsonl       wall seconds per epoch (resumes included)
    <method>/final.json         final per-seed test metrics
    results.md, results.json    Table-1-style summary: mean +- std over seeds
"""
from __future__ import annotations

import contextlib
import json
import math
import pathlib
import shutil
import signal
import subprocess
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import rhel_jax
from experiments import checkpoints
from experiments.config_check import validate_config
from experiments.report import recall_by_step_lines
from experiments.sharding import seed_mesh, shard_seeds
from experiments.tasks import build_task
from rhel_jax.methods import METHODS
from rhel_jax.integrator import forward_phase
from rhel_jax.losses import LOSSES


def make_optimizer(train: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  if train.schedule == "constant":
    lr = train.lr
  elif train.schedule == "cosine":
    lr = optax.cosine_decay_schedule(train.lr, total_steps)
  else:  # 'warmup_cosine'
    if train.warmup_steps >= total_steps:
      raise ValueError(f"config.train.warmup_steps={train.warmup_steps} must be below the run's "
                       f"{total_steps} optimizer steps (num_epochs x steps per epoch)")
    lr = optax.warmup_cosine_decay_schedule(0.0, train.lr, train.warmup_steps, total_steps)
  parts = [optax.clip_by_global_norm(train.clip_norm)] if train.clip_norm > 0 else []
  parts.append(optax.adam(lr))
  if train.w_lr_scale != 1.0:  # W's own step size (its slowest modes sit near the stability edge)
    parts.append(optax.masked(optax.scale(train.w_lr_scale), lambda params: {k: k == "W" for k in params}))
  return optax.chain(*parts)


def model_config(config) -> rhel_jax.ModelConfig:
  m = config.model
  return rhel_jax.ModelConfig(alpha=m.alpha, beta=m.beta, dt=m.dt, rho=m.rho,
                              exact_reversible=m.exact_reversible, grid_bits=m.grid_bits)


def method_options(config, method: str) -> dict:
  """The method's options from ``config.method.<config_key>``, defaults resolved (None -> default)."""
  spec = rhel_jax.METHODS[method]
  given = {o.name: config.method.get(o.config_key) for o in spec.options}
  return spec.resolve_options({k: v for k, v in given.items() if v is not None}, config.model.dtype,
                              model_config(config))


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _cosine(a, b):
  # A zero gradient (e.g. readout's for W) is orthogonal to everything; a non-finite one stays NaN.
  norms = jnp.linalg.norm(a) * jnp.linalg.norm(b)
  return jnp.where(norms == 0, 0.0, jnp.vdot(a, b) / jnp.where(norms == 0, 1.0, norms))


class MethodTrainer:
  """Jitted, seed-vmapped functions for one method: init, one epoch, evaluation, alignment."""

  def __init__(self, config, task, method: str, dtype):
    self.config, self.task, self.method, self.dtype = config, task, method, dtype
    self.model = model_config(config)
    self.fn = METHODS[method].fn
    self.options = method_options(config, method)
    self.loss_fn = LOSSES[task.loss]
    self.steps_per_epoch = task.steps_per_epoch
    self.optimizer = make_optimizer(config.train, config.num_epochs * self.steps_per_epoch)
    self.init = jax.jit(jax.vmap(self._init))
    # seq_len is static: each curriculum length compiles once.
    self.epoch = jax.jit(lambda state, keys, epoch, seq_len: jax.vmap(
        lambda s, k: self._epoch(s, k, epoch, seq_len))(state, keys), static_argnums=3)
    self.evaluate = jax.jit(jax.vmap(self._evaluate))
    self.alignment = jax.jit(jax.vmap(self._alignment))

  def _init(self, key):
    m = self.config.model
    params = rhel_jax.init_params(key, self.task.n_in, m.num_hidden, self.task.n_out, dtype=self.dtype,
                                  w_scale=m.w_scale, in_scale=m.in_scale, b_scale=m.b_scale,
                                  out_scale=m.out_scale,
                                  spectrum=((m.alpha, m.beta, m.omega_min, m.omega_max)
                                            if m.w_init == "spectral" else None))
    return {"params": params, "opt_state": self.optimizer.init(params), "diverged": jnp.array(False)}

  def _grads(self, params, batch, fn=None, options=None):
    inputs, targets, mask = batch
    fn = fn or self.fn
    options = self.options if options is None else options
    return fn(params, self.model, jnp.swapaxes(inputs, 0, 1), targets, mask, self.loss_fn, **options)

  def _epoch(self, state, data_key, epoch, seq_len):
    """One epoch for one seed. A non-finite loss or gradient freezes the seed (no update)."""
    def train_step(state, i):
      step = epoch * self.steps_per_epoch + i
      loss, grads = self._grads(state["params"], self.task.train_batch(data_key, step, seq_len))
      # Frozen tensors get no update (and do not count towards the clipping norm).
      grads = {k: jnp.zeros_like(g) if k in self.config.train.frozen_params else g for k, g in grads.items()}
      ok = jnp.isfinite(loss) & _all_finite(grads) & ~state["diverged"]
      updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
      params = optax.apply_updates(state["params"], updates)
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
      new_state = {"params": keep(params, state["params"]), "opt_state": keep(opt_state, state["opt_state"]),
                   "diverged": state["diverged"] | ~ok}
      return new_state, loss

    state, step_losses = jax.lax.scan(train_step, state, jnp.arange(self.steps_per_epoch))
    return state, jnp.mean(step_losses)

  def _evaluate(self, params, test):
    inputs, targets, mask = test
    _, ys, _ = forward_phase(params, self.model, jnp.swapaxes(inputs, 0, 1))
    return self.task.metrics(jnp.swapaxes(ys, 0, 1), targets, mask)

  def _alignment(self, params, probe):
    _, ref = self._grads(params, probe, METHODS["bptt"].fn, {})
    _, grads = self._grads(params, probe)
    out = {f"cos_{k}": _cosine(grads[k], ref[k]) for k in ref}
    flat = lambda g: jnp.concatenate([jnp.ravel(g[k]) for k in sorted(g)])
    out["cos_all"] = _cosine(flat(grads), flat(ref))
    return out


class Interrupted(Exception):
  """Raised after SIGINT/SIGTERM once the current epoch is checkpointed."""

  def __init__(self, signum: int):
    super().__init__(f"stopped by {signal.Signals(signum).name}; the last epoch is checkpointed, "
                     "re-run the same command to resume")
    self.signum = signum


class _StopFlag:
  """Turns SIGINT/SIGTERM into a flag that the epoch loop checks (a jitted epoch is never cut)."""

  def __init__(self):
    self.signum = None

  @contextlib.contextmanager
  def installed(self):
    def handler(signum, frame):
      del frame
      self.signum = signum
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      yield self
    finally:
      for s, h in previous.items():
        signal.signal(s, h)


def to_host(x) -> np.ndarray:
  """A seed-sharded array as numpy; across several hosts, gathered from every process first."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def _seed_rows(epoch: int, values: dict[str, Any]) -> list[dict]:
  """{'name': (num_seeds,) array} -> one JSON row per seed."""
  arrays = {k: to_host(v) for k, v in values.items()}
  num_seeds = len(next(iter(arrays.values())))
  return [{"epoch": epoch, "seed": s, **{k: v[s].tolist() for k, v in arrays.items()}} for s in range(num_seeds)]


def _fmt_time(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
  """Elapsed time and ETA over all (method, epoch) units of the run."""

  def __init__(self, total_units: int):
    self.total, self.done, self.start, self.measured, self.measured_time = total_units, 0, time.time(), 0, 0.0

  def update(self, units_done_now: int, seconds: float):
    self.done += units_done_now
    self.measured += units_done_now
    self.measured_time += seconds

  def skip(self, units: int):
    self.done += units

  def eta(self) -> str:
    if not self.measured:
      return "?"
    return _fmt_time(self.measured_time / self.measured * (self.total - self.done))

  def elapsed(self) -> str:
    return _fmt_time(time.time() - self.start)


def train_method(config, task, method: str, directory: pathlib.Path, dtype, progress: Progress,
                 stop: Optional[_StopFlag] = None, mesh=None) -> dict:
  """Trains one method over all seeds (resuming if possible); returns its final per-seed metrics."""
  directory.mkdir(parents=True, exist_ok=True)
  trainer = MethodTrainer(config, task, method, dtype)
  seed_keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  per_seed = jax.vmap(lambda k: jax.random.split(k, 4))(seed_keys)  # (num_seeds, 4) keys
  init_keys, data_keys, test_keys, probe_keys = (per_seed[:, i] for i in range(4))
  test_sets = jax.vmap(task.test_set)(test_keys)
  probes = jax.vmap(task.probe_batch)(probe_keys)

  state = trainer.init(init_keys)
  restored_epoch, state = checkpoints.restore_latest(directory, state)
  if mesh is not None:
    state, data_keys, test_sets, probes = shard_seeds((state, data_keys, test_sets, probes), mesh)
  start = restored_epoch or 0
  metrics_rows = [r for r in checkpoints.read_jsonl(directory / "metrics.jsonl") if r["epoch"] < start]
  align_rows = [r for r in checkpoints.read_jsonl(directory / "alignment.jsonl") if r["epoch"] < start]
  timing_rows = [r for r in checkpoints.read_jsonl(directory / "timing.jsonl") if r["epoch"] < start]
  if start:
    logging.info("[%s] resuming from the checkpoint at epoch %d", method, start)
  progress.skip(start)

  for epoch in range(start, config.num_epochs):
    t0 = time.time()
    if epoch in config.alignment_epochs:
      align_rows += _seed_rows(epoch, trainer.alignment(state["params"], probes))
      checkpoints.write_jsonl(directory / "alignment.jsonl", align_rows)
    seq_len = task.train_seq_len(epoch)
    state, train_loss = trainer.epoch(state, data_keys, epoch, seq_len)
    evaluation = trainer.evaluate(state["params"], test_sets)
    rows = _seed_rows(epoch, {"train_loss": train_loss, **{f"test_{k}": v for k, v in evaluation.items()},
                              "diverged": state["diverged"]})
    for row in rows:
      row["train_seq_len"] = seq_len
    metrics_rows += rows
    checkpoints.write_jsonl(directory / "metrics.jsonl", metrics_rows)
    # Timing apart from the metrics, which stay bit-identical across reruns and resumes.
    timing_rows.append({"epoch": epoch, "seconds": time.time() - t0})
    checkpoints.write_jsonl(directory / "timing.jsonl", timing_rows)
    stopping = stop is not None and stop.signum is not None
    if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.num_epochs or stopping:
      if jax.process_count() == 1:
        checkpoints.save_checkpoint(directory, epoch + 1, state)
      else:  # gather the seed shards; one process writes (the workdir must be a shared filesystem)
        host_state = jax.tree.map(to_host, state)
        if jax.process_index() == 0:
          checkpoints.save_checkpoint(directory, epoch + 1, host_state)
    progress.update(1, time.time() - t0)
    primary = to_host(evaluation[task.primary_metric])
    diverged = to_host(state["diverged"])
    logging.info("[%s] epoch %d/%d  train loss %.4f  test %s %.2f%% (min %.2f%%)%s  |  %s elapsed, ETA %s",
                 method, epoch + 1, config.num_epochs, float(np.nanmean(to_host(train_loss))),
                 task.primary_metric, 100 * primary.mean(), 100 * primary.min(),
                 f"  DIVERGED seeds {np.flatnonzero(diverged).tolist()}" if diverged.any() else "",
                 progress.elapsed(), progress.eta())
    if stopping:
      raise Interrupted(stop.signum)

  final = trainer.evaluate(state["params"], test_sets)
  result = {"method": method, "diverged": to_host(state["diverged"]).tolist(),
            **{f"test_{k}": to_host(v).tolist() for k, v in final.items()}}
  checkpoints.atomic_write_text(directory / "final.json", json.dumps(result, indent=1))
  return {**result, "wall_seconds": checkpoints.wall_seconds(directory)}


def _git_revision() -> str:
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).parent, check=True).stdout.strip()
    # Result files under docs/ that a measurement rewrites do not make the code dirty.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)docs"],
                           capture_output=True, text=True, cwd=pathlib.Path(__file__).parent).stdout.strip()
    return rev + ("-dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def summarize(results: dict[str, dict], primary: str) -> list[dict]:
  """Per method: mean and std over the seeds that did not diverge."""
  rows = []
  for method, r in results.items():
    ok = ~np.asarray(r["diverged"], bool)
    row = {"method": method, "seeds": int(ok.sum()), "diverged_seeds": np.flatnonzero(~ok).tolist(),
           "wall_seconds": r.get("wall_seconds", math.nan)}
    for key in (f"test_{primary}", "test_pattern_acc", "test_loss_vs_memoryless"):
      if key in r:
        values = np.asarray(r[key], float)[ok]
        row[key] = (float(values.mean()), float(values.std())) if values.size else (math.nan, math.nan)
    if "test_acc_by_step" in r:
      by_step = np.asarray(r["test_acc_by_step"], float)[ok]
      row["test_acc_by_step"] = by_step.mean(0).tolist() if by_step.size else []
    rows.append(row)
  return rows


def results_markdown(config, rows: list[dict], task, command: str, revision: str) -> str:
  primary = task.primary_metric
  metric_cols = [k for k in dict.fromkeys((f"test_{primary}", "test_pattern_acc", "test_loss_vs_memoryless"))
                 if k in rows[0]]
  pct = lambda k: k != "test_loss_vs_memoryless"
  head = "| method | " + " | ".join(k.removeprefix("test_") + (" (%)" if pct(k) else "") for k in metric_cols) + \
      " | seeds | diverged | wall time |"
  lines = [f"# Results: {config.name}", "",
           "Mean ± std over seeds of the final test metrics (per-seed values in `<method>/final.json`).",
           "", f"- command: `{command}`", f"- git revision: `{revision}`",
           f"- task: {config.task.name}, T={task.seq_len}, N={config.model.num_hidden}, "
           f"{config.num_epochs} epochs x {task.steps_per_epoch} steps, batch {config.batch_size}, "
           f"{config.num_seeds} seeds, {config.model.dtype}"
           + (f", exact-reversible RHEL phases ({config.model.grid_bits}-bit grid)"
              if config.model.exact_reversible else "")]
  rhel_methods = [m for m in config.methods if "eps" in METHODS[m].option_names]
  if rhel_methods:
    eps = method_options(config, rhel_methods[0])["eps"]
    lines.append(f"- RHEL nudge eps = {eps:g} per sequence"
                 + (" (rhel_jax.default_eps)" if config.method.eps is None else ""))
  if getattr(task, "sizes", None):
    lines.append(f"- split sizes: {task.sizes}")
  lines += ["", head,
           "|" + "---|" * (len(metric_cols) + 4)]
  for row in rows:
    cells = []
    for k in metric_cols:
      mean, std = row[k]
      cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}" if pct(k) else f"{mean:.3f} ± {std:.3f}")
    lines.append(f"| {row['method']} | " + " | ".join(cells) +
                 f" | {row['seeds']} | {row['diverged_seeds'] or '-'} | "
                 + ("-" if math.isnan(row["wall_seconds"]) else _fmt_time(row["wall_seconds"])) + " |")
  lines += recall_by_step_lines({r["method"]: r["test_acc_by_step"] for r in rows if r.get("test_acc_by_step")})
  diverged = [r for r in rows if r["diverged_seeds"]]
  if diverged:
    lines += ["", "Diverged seeds (non-finite loss or gradient; frozen at that step and left out of the "
              "mean): " + "; ".join(f"{r['method']}: {r['diverged_seeds']}" for r in diverged)]
  return "\n".join(lines) + "\n"


def prepare_workdir(config, workdir: pathlib.Path, overwrite: bool) -> None:
  """Creates the workdir and saves the config; refuses a workdir that holds a different run."""
  resolved = json.loads(config.to_json_best_effort())
  path = workdir / "config.json"
  if path.exists():
    saved = json.loads(path.read_text())
    diff = sorted(_diff_keys(saved, resolved))
    # A field added by newer code (absent from the saved config) is accepted when its value is the
    # one that reproduces the code before it (ADDED_FIELDS), so a long run resumes across such a
    # change; any other difference is refused.
    changed = [k for k, added in diff if not added or _lookup(resolved, k) != ADDED_FIELDS.get(k, _MISSING)]
    if changed:
      if not overwrite:
        raise ValueError(f"workdir {workdir} holds a run with a different config (fields {changed}); "
                         "use another --workdir, or --overwrite to delete that run")
      shutil.rmtree(workdir)
    elif diff:
      logging.info("workdir %s: config fields new since the run started, at their defaults: %s", workdir,
                   [k for k, _ in diff])
  workdir.mkdir(parents=True, exist_ok=True)
  checkpoints.atomic_write_text(path, json.dumps(resolved, indent=1, sort_keys=True))


_MISSING = object()
# Config fields added after runs had been started, with the value that behaves as the code did
# before the field existed (JSON form). Only these may be absent from a saved config.
ADDED_FIELDS = {"train.frozen_params": [], "train.w_lr_scale": 1.0, "task.curriculum": [],
                "task.curriculum_stage_epochs": 10, "model.w_init": "gaussian", "model.omega_min": 0.1,
                "model.omega_max": 3.0}


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


def run_experiment(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
                   command: Optional[str] = None) -> list[dict]:
  """Trains every method in ``config.methods``; writes metrics, checkpoints and results.md.

  Returns the summary rows (one per method, mean and std over seeds).
  """
  validate_config(config)
  mesh = seed_mesh(config.num_devices, config.num_seeds, config.distributed)
  if config.model.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dtype = jnp.dtype(config.model.dtype)
  workdir = pathlib.Path(workdir)
  prepare_workdir(config, workdir, overwrite)
  task = build_task(config, dtype)
  logging.info("workdir %s; %d seeds x %d methods on %d %s device(s)", workdir, config.num_seeds,
               len(config.methods), mesh.size, jax.devices()[0].platform)
  progress = Progress(len(config.methods) * config.num_epochs)
  command = command or f"run_experiment(<{config.name}>, {workdir})"
  revision = _git_revision()  # of the code that runs, not of whatever is checked out at the end
  invocations = checkpoints.read_jsonl(workdir / "invocations.jsonl")
  invocations.append({"command": command, "revision": revision, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  checkpoints.write_jsonl(workdir / "invocations.jsonl", invocations)
  results = {}
  stop = _StopFlag()
  for method in config.methods:
    with stop.installed():
      results[method] = train_method(config, task, method, workdir / method, dtype, progress, stop, mesh)
    # Rewritten after every method, so a long sweep shows the finished methods early.
    rows = summarize(results, task.primary_metric)
    text = results_markdown(config, rows, task, command, revision)
    if len(results) < len(config.methods):
      text += f"\nIn progress: {len(results)} of {len(config.methods)} methods finished.\n"
    checkpoints.atomic_write_text(workdir / "results.md", text)
    checkpoints.atomic_write_text(workdir / "results.json", json.dumps(rows, indent=1))
  print(text, flush=True)
  return rows

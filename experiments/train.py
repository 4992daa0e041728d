"""Training: every configured method over ``num_seeds`` seeds in one vmapped, jitted program.

``run_experiment(config, workdir)`` is the library entry point (``main.py`` only parses flags).
Per method, one jitted function runs a whole epoch (a ``lax.scan`` of optimizer steps) for all
seeds at once (:mod:`experiments.trainer`); the Python loop here logs, evaluates, measures
gradient alignment and checkpoints. Re-running with the same workdir resumes from the newest
checkpoint.

Workdir layout::

    config.json                 resolved config (a different config is refused; experiments.workdir)
    invocations.jsonl           command, git revision and start time of every invocation (resumes too)
    <method>/metrics.jsonl      one row per (epoch, seed): train loss, test metrics, diverged
    <method>/alignment.jsonl    one row per (alignment epoch, seed): cosine with BPTT per tensor
    <method>/checkpoint_<epoch>/  params + optimizer state + divergence flags (Orbax; experiments.checkpoints)
    <method>/timing.jsonl       wall seconds per epoch (resumes included)
    <method>/final.json         final per-seed test metrics
    results.md, results.json    Table-1-style summary: mean +- std over seeds (experiments.summary)
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import checkpoints
from experiments.config_check import validate_config
from experiments.optim import make_optimizer  # noqa: F401  (part of this module's interface)
from experiments.progress import Interrupted, Progress, StopFlag  # noqa: F401
from experiments.sharding import agreed_signal, seed_mesh, shard_seeds, to_host
from experiments.summary import best_on_validation, results_markdown, summarize
from experiments.tasks import build_task
from experiments.trainer import MethodTrainer, method_options, model_config, seed_keys  # noqa: F401
from experiments.workdir import ADDED_FIELDS, git_revision, prepare_workdir, renamed_fields  # noqa: F401


def seed_rows(epoch: int, values: dict[str, Any]) -> list[dict]:
  """{'name': (num_seeds,) array} -> one JSON row per seed."""
  arrays = {k: to_host(v) for k, v in values.items()}
  num_seeds = len(next(iter(arrays.values())))
  return [{"epoch": epoch, "seed": s, **{k: v[s].tolist() for k, v in arrays.items()}} for s in range(num_seeds)]


def train_method(config, task, method: str, directory: pathlib.Path, dtype, progress: Progress,
                 stop: Optional[StopFlag] = None, mesh=None) -> dict:
  """Trains one method over all seeds (resuming if possible); returns its final per-seed metrics."""
  directory.mkdir(parents=True, exist_ok=True)
  trainer = MethodTrainer(config, task, method, dtype)
  init_keys, data_keys, test_keys, probe_keys = seed_keys(config.seed, config.num_seeds)
  test_sets = jax.vmap(task.test_set)(test_keys)
  val_sets = jax.vmap(task.validation_set)(test_keys) if task.validation_set(test_keys[0]) is not None else None
  probes = jax.vmap(task.probe_batch)(probe_keys)
  train_data = task.train_data()

  state = trainer.init(init_keys)
  restored_epoch, state = checkpoints.restore_latest(directory, state)
  if mesh is not None:
    state, data_keys, test_sets, probes, val_sets = shard_seeds((state, data_keys, test_sets, probes, val_sets),
                                                                mesh)
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
      align_rows += seed_rows(epoch, trainer.alignment(state["params"], probes))
      checkpoints.write_jsonl(directory / "alignment.jsonl", align_rows)
    seq_len = task.train_seq_len(epoch)
    state, train_loss = trainer.epoch(state, data_keys, train_data, epoch, seq_len)
    evaluation = trainer.evaluate(state["params"], test_sets)
    validation = {} if val_sets is None else trainer.evaluate(state["params"], val_sets)
    rows = seed_rows(epoch, {"train_loss": train_loss, **{f"test_{k}": v for k, v in evaluation.items()},
                              **{f"val_{k}": v for k, v in validation.items()}, "diverged": state["diverged"]})
    for row in rows:
      row["train_seq_len"] = seq_len
    metrics_rows += rows
    checkpoints.write_jsonl(directory / "metrics.jsonl", metrics_rows)
    # Timing apart from the metrics, which stay bit-identical across reruns and resumes.
    timing_rows.append({"epoch": epoch, "seconds": time.time() - t0})
    checkpoints.write_jsonl(directory / "timing.jsonl", timing_rows)
    signum = agreed_signal(None if stop is None else stop.signum)  # every process stops at the same epoch
    stopping = signum is not None
    if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.num_epochs or stopping:
      # Every process saves its seed shards (Orbax; a multi-host workdir is on a shared filesystem).
      checkpoints.save_checkpoint(directory, epoch + 1, state)
    progress.update(1, time.time() - t0)
    primary = to_host(evaluation[task.primary_metric])
    diverged = to_host(state["diverged"])
    logging.info("[%s] epoch %d/%d  train loss %.4f  test %s %.2f%% (min %.2f%%)%s  |  %s elapsed, ETA %s",
                 method, epoch + 1, config.num_epochs, float(np.nanmean(to_host(train_loss))),
                 task.primary_metric, 100 * primary.mean(), 100 * primary.min(),
                 f"  DIVERGED seeds {np.flatnonzero(diverged).tolist()}" if diverged.any() else "",
                 progress.elapsed(), progress.eta())
    if stopping:
      checkpoints.wait_until_finished(directory)
      raise Interrupted(signum)

  final = trainer.evaluate(state["params"], test_sets)
  checkpoints.wait_until_finished(directory)  # final.json promises the last checkpoint is on disk
  result = {"method": method, "diverged": to_host(state["diverged"]).tolist(),
            **{f"test_{k}": to_host(v).tolist() for k, v in final.items()}}
  if val_sets is not None:  # beside the last epoch: each seed's epoch chosen on validation
    result.update(best_on_validation(metrics_rows, task.primary_metric, config.num_seeds))
  checkpoints.atomic_write_text(directory / "final.json", json.dumps(result, indent=1))
  return {**result, "wall_seconds": checkpoints.wall_seconds(directory)}


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
  revision = git_revision()  # of the code that runs, not of whatever is checked out at the end
  invocations = checkpoints.read_jsonl(workdir / "invocations.jsonl")
  invocations.append({"command": command, "revision": revision, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  checkpoints.write_jsonl(workdir / "invocations.jsonl", invocations)
  results = {}
  stop = StopFlag()
  for method in config.methods:
    with stop.installed():
      results[method] = train_method(config, task, method, workdir / method, dtype, progress, stop, mesh)
    # Rewritten after every method, so a long sweep shows the finished methods early.
    rows = summarize(results, task.summary_metrics)
    text = results_markdown(config, rows, task, command, revision)
    if len(results) < len(config.methods):
      text += f"\nIn progress: {len(results)} of {len(config.methods)} methods finished.\n"
    checkpoints.atomic_write_text(workdir / "results.md", text)
    checkpoints.atomic_write_text(workdir / "results.json", json.dumps(rows, indent=1))
  if checkpoints.is_primary():
    print(text, flush=True)
  return rows

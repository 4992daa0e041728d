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

from experiments import checkpoints, plots, recipes, sweep
from experiments.config_check import validate_config
from experiments.optim import make_optimizer  # noqa: F401  (part of this module's interface)
from experiments.progress import Interrupted, Progress, StopFlag  # noqa: F401
from experiments.sharding import agreed_signal, is_primary, seed_mesh, shard_seeds, to_host
from experiments.summary import best_on_validation, results_markdown, summarize
from experiments.tasks import build_task
from experiments.trainer import MethodTrainer, method_options, model_config, seed_keys  # noqa: F401
from experiments.workdir import git_revision, prepare_workdir, renamed_fields, with_added_fields  # noqa: F401


def seed_rows(epoch: int, values: dict[str, Any]) -> list[dict]:
  """{'name': (num_seeds,) array} -> one JSON row per seed."""
  arrays = {k: to_host(v) for k, v in values.items()}
  num_seeds = len(next(iter(arrays.values())))
  return [{"epoch": epoch, "seed": s, **{k: v[s].tolist() for k, v in arrays.items()}} for s in range(num_seeds)]


def diverged_note(diverged: np.ndarray, num_seeds: int, all_settings) -> str:
  """The log's note of the frozen replicas: seeds, or (setting, seed) pairs in a sweep."""
  if not diverged.any():
    return ""
  if len(all_settings) == 1:
    return f"  DIVERGED seeds {np.flatnonzero(diverged).tolist()}"
  return "  DIVERGED " + ", ".join(f"{all_settings[r // num_seeds].label} seed {r % num_seeds}"
                                   for r in np.flatnonzero(diverged))


def split_rows(rows: list[dict], num_seeds: int, num_settings: int) -> list[list[dict]]:
  """Replica rows (setting-major) -> each setting's rows, with ``seed`` numbered within the setting."""
  out = [[] for _ in range(num_settings)]
  for row in rows:
    out[row["seed"] // num_seeds].append({**row, "seed": row["seed"] % num_seeds})
  return out


def train_method(config, task, method: str, directory: pathlib.Path, dtype, progress: Progress,
                 stop: Optional[StopFlag] = None, mesh=None,
                 setting_dirs: Optional[list[pathlib.Path]] = None, revision: str = "unknown") -> list[dict]:
  """Trains one method over all seeds (and every setting of ``config.sweep``), resuming if possible.

  ``directory`` holds the checkpoints; each setting's metrics, alignment, timing and final.json go
  to its ``setting_dirs[i] / method`` (without a sweep: ``directory`` itself). Each epoch's timing
  row names the ``revision`` that trained it. Returns each setting's final per-seed metrics.
  """
  all_settings = sweep.settings(config)
  num_seeds, num_settings = config.num_seeds, len(all_settings)
  outs = [d / method for d in setting_dirs] if setting_dirs else [directory]
  if all((d / "final.json").exists() for d in outs):
    # Finished: its config is this one (prepare_workdir refuses any other), and its checkpoints are
    # not needed (a run kept without them, workdir.keep_finished, is taken as it is).
    logging.info("[%s] finished earlier (final.json): not trained again", method)
    progress.skip(config.num_epochs)
    return [{**json.loads((d / "final.json").read_text()), "wall_seconds": checkpoints.wall_seconds(d)}
            for d in outs]
  for d in (directory, *outs):
    d.mkdir(parents=True, exist_ok=True)
  values = sweep.replica_values(all_settings, num_seeds, dtype)
  trainer = MethodTrainer(config, task, method, dtype, swept=tuple(values))
  tile = lambda keys: jnp.concatenate([keys] * num_settings)  # every setting trains the same seeds
  init_keys, data_keys, test_keys, probe_keys = (tile(k) for k in seed_keys(config.seed, num_seeds))
  test_sets = jax.vmap(task.test_set)(test_keys)
  val_sets = jax.vmap(task.validation_set)(test_keys) if task.validation_set(test_keys[0]) is not None else None
  probes = jax.vmap(task.probe_batch)(probe_keys)
  train_data = task.train_data()

  state = trainer.init(init_keys)
  restored_epoch, state = checkpoints.restore_latest(directory, state)
  if mesh is not None:
    state, data_keys, test_sets, probes, val_sets, values = shard_seeds(
        (state, data_keys, test_sets, probes, val_sets, values), mesh)
  start = restored_epoch or 0
  # Per setting: rows of the epochs before the checkpoint (a stop after it wrote later rows).
  kept = lambda name: [[r for r in checkpoints.read_jsonl(d / name) if r["epoch"] < start] for d in outs]
  metrics_rows, align_rows, timing_rows = kept("metrics.jsonl"), kept("alignment.jsonl"), kept("timing.jsonl")
  if start:
    logging.info("[%s] resuming from the checkpoint at epoch %d", method, start)
  progress.skip(start)

  def append(rows_per_setting, new_rows, name):
    for rows, new, d in zip(rows_per_setting, split_rows(new_rows, num_seeds, num_settings), outs):
      rows += new
      checkpoints.write_jsonl(d / name, rows)

  for epoch in range(start, config.num_epochs):
    t0 = time.time()
    if epoch in config.alignment_epochs:
      append(align_rows, seed_rows(epoch, trainer.alignment(state["params"], probes, values)), "alignment.jsonl")
    seq_len = task.train_seq_len(epoch)
    state, train_loss = trainer.epoch(state, data_keys, train_data, epoch, seq_len, values)
    evaluation = trainer.evaluate(state["params"], test_sets)
    validation = {} if val_sets is None else trainer.evaluate(state["params"], val_sets)
    rows = seed_rows(epoch, {"train_loss": train_loss, **{f"test_{k}": v for k, v in evaluation.items()},
                              **{f"val_{k}": v for k, v in validation.items()}, "diverged": state["diverged"]})
    for row in rows:
      row["train_seq_len"] = seq_len
    append(metrics_rows, rows, "metrics.jsonl")
    # Timing apart from the metrics, which stay bit-identical across reruns and resumes.
    seconds = time.time() - t0
    for rows, d in zip(timing_rows, outs):
      rows.append({"epoch": epoch, "seconds": seconds, "revision": revision})
      checkpoints.write_jsonl(d / "timing.jsonl", rows)
    signum = agreed_signal(None if stop is None else stop.signum)  # every process stops at the same epoch
    stopping = signum is not None
    if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.num_epochs or stopping:
      # Every process saves its seed shards (Orbax; a multi-host workdir is on a shared filesystem).
      checkpoints.save_checkpoint(directory, epoch + 1, state)
    progress.update(1, time.time() - t0)
    primary = to_host(evaluation[task.primary_metric])
    diverged = to_host(state["diverged"])
    logging.info("[%s] epoch %d/%d  train loss %.4f  test %s %.2f%% (min %.2f%%)%s%s  |  %s elapsed, ETA %s",
                 method, epoch + 1, config.num_epochs, float(np.nanmean(to_host(train_loss))),
                 task.primary_metric, 100 * primary.mean(), 100 * primary.min(),
                 f" over {num_settings} settings, best setting {100 * primary.reshape(num_settings, -1).mean(1).max():.2f}%"
                 if num_settings > 1 else "",
                 diverged_note(diverged, num_seeds, all_settings),
                 progress.elapsed(), progress.eta())
    if stopping:
      checkpoints.wait_until_finished(directory)
      raise Interrupted(signum)

  final = {k: to_host(v) for k, v in trainer.evaluate(state["params"], test_sets).items()}
  checkpoints.wait_until_finished(directory)  # final.json promises the last checkpoint is on disk
  diverged = to_host(state["diverged"])
  results = []
  for i, d in enumerate(outs):
    part = slice(i * num_seeds, (i + 1) * num_seeds)
    result = {"method": method, "diverged": diverged[part].tolist(),
              **{f"test_{k}": v[part].tolist() for k, v in final.items()}}
    if val_sets is not None:  # beside the last epoch: each seed's epoch chosen on validation
      result.update(best_on_validation(metrics_rows[i], task.primary_metric, num_seeds))
    checkpoints.atomic_write_text(d / "final.json", json.dumps(result, indent=1))
    results.append({**result, "wall_seconds": checkpoints.wall_seconds(d)})
  return results


def run_experiment(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
                   command: Optional[str] = None) -> list[dict]:
  """Trains every method in ``config.methods``; writes metrics, checkpoints and results.md.

  Returns the summary rows (one per method, mean and std over seeds; with a sweep, one per method
  and setting, each with its ``setting`` label).
  """
  validate_config(config)
  all_settings = sweep.settings(config)
  mesh = seed_mesh(config.num_devices, config.num_seeds * len(all_settings), config.distributed,
                   what=f"config.num_seeds={config.num_seeds} x {len(all_settings)} sweep settings"
                   if len(all_settings) > 1 else None)
  if config.model.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dtype = jnp.dtype(config.model.dtype)
  workdir = pathlib.Path(workdir)
  prepare_workdir(config, workdir, overwrite)
  task = build_task(config, dtype)
  logging.info("workdir %s; %d seeds x %d methods%s on %d %s device(s)", workdir, config.num_seeds,
               len(config.methods), f" x {len(all_settings)} settings" if len(all_settings) > 1 else "",
               mesh.size, jax.devices()[0].platform)
  progress = Progress(len(config.methods) * config.num_epochs)
  command = command or f"run_experiment(<{config.name}>, {workdir})"
  revision = git_revision()  # of the code that runs, not of whatever is checked out at the end
  invocations = checkpoints.read_jsonl(workdir / "invocations.jsonl")
  invocations.append({"command": command, "revision": revision, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  checkpoints.write_jsonl(workdir / "invocations.jsonl", invocations)
  # A sweep: each setting gets a run directory of its own under settings/<label> (its config with
  # the setting's values, its metrics and results), as a separate run would write.
  setting_dirs = None
  if all_settings[0].values:
    setting_dirs = [workdir / "settings" / s.label for s in all_settings]
    for s, d in zip(all_settings, setting_dirs):
      prepare_workdir(sweep.setting_config(config, s), d, overwrite=False)
      checkpoints.write_jsonl(d / "invocations.jsonl", [{**i, "sweep": str(workdir), "setting": s.label}
                                                         for i in invocations])
  results: list[dict] = [{} for _ in all_settings]
  stop = StopFlag()
  for method in config.methods:
    with stop.installed():
      finals = train_method(recipes.apply(config, method), task, method, workdir / method, dtype, progress, stop,
                            mesh, setting_dirs, revision)
    for per_setting, final in zip(results, finals):
      per_setting[method] = final
    # Rewritten after every method, so a long run shows the finished methods early.
    in_progress = (f"\nIn progress: {len(results[0])} of {len(config.methods)} methods finished.\n"
                   if len(results[0]) < len(config.methods) else "")
    all_rows = []
    for i, s in enumerate(all_settings):
      rows = summarize(results[i], task.summary_metrics)
      if setting_dirs:
        text = (results_markdown(sweep.setting_config(config, s), rows, task, command, revision)
                + figures_markdown(setting_dirs[i], config, task, list(results[i])) + in_progress)
        checkpoints.atomic_write_text(setting_dirs[i] / "results.md", text)
        checkpoints.atomic_write_text(setting_dirs[i] / "results.json", json.dumps(rows, indent=1))
        rows = [{"setting": s.label, **r} for r in rows]
      all_rows += rows
    text = (sweep_markdown(config, all_settings, all_rows, task, command, revision) if setting_dirs
            else results_markdown(config, all_rows, task, command, revision)
            + figures_markdown(workdir, config, task, list(results[0]))) + in_progress
    checkpoints.atomic_write_text(workdir / "results.md", text)
    checkpoints.atomic_write_text(workdir / "results.json", json.dumps(all_rows, indent=1))
  if is_primary():
    print(text, flush=True)
  return all_rows


def figures_markdown(workdir: pathlib.Path, config, task, methods: list[str]) -> str:
  """Writes the run's pictures into ``workdir`` and returns the markdown that shows them."""
  lines = []
  for caption, name in plots.run_figures(workdir, config, task, methods):
    lines += ["", f"{caption}:", "", f"![{caption}]({name})"]
  return "\n".join(lines) + "\n" if lines else ""


def sweep_markdown(config, all_settings, rows: list[dict], task, command: str, revision: str) -> str:
  """The sweep's results.md: one row per (method, setting), each linking the setting's own results."""
  key = f"test_{task.primary_metric}"
  pct = task.primary_metric in task.fraction_metrics
  lines = [f"# Sweep: {config.name}", "",
           f"{len(all_settings)} settings x {config.num_seeds} seeds, trained as one vmapped program. Each setting's "
           "own run directory (config, metrics, results) is under `settings/<label>/`.", "",
           f"- command: `{command}`", f"- git revision: `{revision}`",
           f"- swept: {', '.join(f'`{f}` {v}' for f, v in config.sweep.items())}", "",
           f"| method | setting | final {task.primary_metric}{' (%)' if pct else ''} | seeds | diverged |",
           "|---|---|---|---|---|"]
  for r in rows:
    mean, std = r.get(key, (float("nan"), float("nan")))
    scale = 100 if pct else 1
    lines.append(f"| {r['method']} | [{r['setting']}](settings/{r['setting']}/results.md) | "
                 f"{scale * mean:.2f} ± {scale * std:.2f} | {r['seeds']} | {len(r['diverged_seeds'])} |")
  return "\n".join(lines) + "\n"

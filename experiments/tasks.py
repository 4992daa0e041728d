"""Tasks as the trainer sees them: shapes, loss, jittable batch sampling and metrics.

A task provides ``n_in``, ``n_out``, ``loss`` (a name from ``rhel_jax.LOSSES``),
``primary_metric``, ``train_batch(key, step)``, ``test_set(key)``, ``probe_batch(key)`` and
``metrics(ys, targets, mask)``. Batches are ``(inputs (B, T, n_in), targets, mask (B, T))``;
all four functions are pure and jittable, so the trainer vmaps them over seeds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from rhel_jax import losses
from rhel_jax.copy_task import CopyTask, metrics as copy_metrics


class CopyPaste:
  """Copy-Paste with data generated on the device; each seed's test set comes from a fixed key."""
  loss = "bce"
  primary_metric = "bit_acc"

  def __init__(self, config: ml_collections.ConfigDict, dtype):
    t = config.task
    self.task = CopyTask(num_bits=t.num_bits, pattern_length=t.pattern_length,
                         steps_per_symbol=t.steps_per_symbol, marker_steps=t.marker_steps, seq_len=t.seq_len)
    self.n_in, self.n_out = self.task.n_in, self.task.n_out
    self.batch_size, self.eval_size, self.probe_size = (config.batch_size, config.eval_size,
                                                        config.alignment_batch_size)
    self.dtype = dtype

  def _sample(self, key, batch):
    inputs, targets, mask = self.task.sample(key, batch, self.dtype)
    return inputs, targets, jnp.broadcast_to(mask, (batch, self.task.seq_len))

  def train_batch(self, key, step):
    return self._sample(jax.random.fold_in(key, step), self.batch_size)

  def test_set(self, key):
    return self._sample(key, self.eval_size)

  def probe_batch(self, key):
    return self._sample(key, self.probe_size)

  def metrics(self, ys, targets, mask):
    out = copy_metrics(ys, targets, mask[0])
    loss = losses.bce(ys, targets, mask)
    return {**out, "loss": loss, "loss_vs_memoryless": loss / self.task.memoryless_loss()}


def build_task(config: ml_collections.ConfigDict, dtype):
  if config.task.name == "copy_paste":
    return CopyPaste(config, dtype)
  raise ValueError(f"config.task.name: unknown task {config.task.name!r}; known: ['copy_paste']")

"""Tasks as the trainer sees them: shapes, loss, jittable batch sampling and metrics.

A task provides ``n_in``, ``n_out``, ``loss`` (a name from ``rhel_jax.LOSSES``),
``primary_metric``, ``train_seq_len(epoch)`` (a Python int: the curriculum's length),
``train_batch(key, step, seq_len)``, ``test_set(key)``, ``probe_batch(key)`` and
``metrics(ys, targets, mask)``. Batches are ``(inputs (B, T, n_in), targets, mask (B, T))``; the
last four are pure and jittable (``seq_len`` static), so the trainer vmaps them over seeds.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from data import augment as hd_augment
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
    self.steps_per_epoch = config.steps_per_epoch
    self.seq_len = self.task.seq_len
    self.curriculum = tuple(t.curriculum)
    self.curriculum_epochs = t.curriculum_stage_epochs
    self.dtype = dtype

  def train_seq_len(self, epoch: int) -> int:
    """Training length in ``epoch``: ``curriculum[i]`` for stage i (``curriculum_stage_epochs``
    epochs each), then ``seq_len``. The delay grows; pattern, marker and window stay the same."""
    stage = epoch // self.curriculum_epochs if self.curriculum else 0
    return self.curriculum[stage] if stage < len(self.curriculum) else self.seq_len

  def _sample(self, key, batch, seq_len=None):
    task = self.task if seq_len in (None, self.seq_len) else dataclasses.replace(self.task, seq_len=seq_len)
    inputs, targets, mask = task.sample(key, batch, self.dtype)
    return inputs, targets, jnp.broadcast_to(mask, (batch, task.seq_len))

  def train_batch(self, key, step, seq_len=None):
    """A training batch of ``seq_len`` steps (a static int; default the task's ``seq_len``)."""
    return self._sample(jax.random.fold_in(key, step), self.batch_size, seq_len)

  def test_set(self, key):
    return self._sample(key, self.eval_size)

  def probe_batch(self, key):
    return self._sample(key, self.probe_size)

  def metrics(self, ys, targets, mask):
    out = copy_metrics(ys, targets, mask[0], window=self.task.window)
    loss = losses.bce(ys, targets, mask)
    return {**out, "loss": loss, "loss_vs_memoryless": loss / self.task.memoryless_loss()}


class HeidelbergDigits:
  """Heidelberg Digits (or any corpus in its layout): classification of the time-averaged logits.

  The padded splits live on the device; each epoch is a permutation of the training set drawn
  from the seed's data key, so batches are exact epochs and reproducible. All seeds share the
  official test split.
  """
  loss = "ce_mean"
  primary_metric = "accuracy"

  def __init__(self, config: ml_collections.ConfigDict, dtype):
    from experiments import hd_data
    arrays = hd_data.load(config.data)
    self.n_in, self.n_out = arrays["train"].inputs.shape[2], hd_data.num_classes(config.data, arrays)
    self.augment = hd_augment.from_config(config.data)  # all off by default: batches as before
    self.dtype = dtype
    as_device = lambda a: (jnp.asarray(a.inputs, dtype), jnp.asarray(a.labels), jnp.asarray(a.mask, dtype))
    # data.eval_split "validation" (probes) evaluates the validation speaker(s) in place of the test split.
    self.train, self.test = as_device(arrays["train"]), as_device(arrays[hd_data.eval_split(config.data)])
    self.num_train = len(arrays["train"])
    self.batch_size, self.probe_size = config.batch_size, config.alignment_batch_size
    for name, size in (("batch_size", self.batch_size), ("alignment_batch_size", self.probe_size)):
      if size > self.num_train:
        raise ValueError(f"config.{name}={size} exceeds the {self.num_train} training examples")
    self.steps_per_epoch = config.steps_per_epoch or self.num_train // self.batch_size
    self.sizes = {split: len(a) for split, a in arrays.items()}
    self.seq_len = arrays["train"].inputs.shape[1]

  def _take(self, data, idx):
    return tuple(x[idx] for x in data)

  def train_seq_len(self, epoch: int) -> int:
    del epoch  # no curriculum: utterances keep their length
    return self.seq_len

  def train_batch(self, key, step, seq_len=None):
    del seq_len
    epoch, i = step // self.steps_per_epoch, step % self.steps_per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), self.num_train)
    inputs, labels, mask = self._take(self.train,
                                      jax.lax.dynamic_slice(order, (i * self.batch_size,), (self.batch_size,)))
    aug_key = jax.random.fold_in(jax.random.fold_in(key, step), 1)  # apart from the permutation's keys
    inputs, mask = hd_augment.augment(aug_key, inputs, mask, self.augment)
    return inputs, labels, mask

  def test_set(self, key):
    del key  # the official test split, the same for every seed
    return self.test

  def probe_batch(self, key):
    return self._take(self.train, jax.random.choice(key, self.num_train, (self.probe_size,), replace=False))

  def metrics(self, ys, labels, mask):
    mean_logits = jnp.sum(mask[..., None] * ys, 1) / jnp.sum(mask, 1)[:, None]
    return {"accuracy": jnp.mean(jnp.argmax(mean_logits, -1) == labels),
            "loss": losses.ce_mean(ys, labels, mask)}


def build_task(config: ml_collections.ConfigDict, dtype):
  if config.task.name == "copy_paste":
    return CopyPaste(config, dtype)
  if config.task.name == "heidelberg_digits":
    return HeidelbergDigits(config, dtype)
  raise ValueError(f"config.task.name: unknown task {config.task.name!r}; "
                   "known: ['copy_paste', 'heidelberg_digits']")

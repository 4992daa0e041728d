"""Copy-Paste (copy memory) task, generated on the device from a JAX key, and its trainer adapter.

Layout of one sequence of ``seq_len`` steps (inputs: ``num_bits`` bit channels + 1 marker)::

    [pattern: P symbols x S steps][blank delay][marker pulse: M steps][recall window: P x S steps]

The network must output the pattern's bits during the recall window. The loss is binary
cross-entropy on the recall window only (``mask``); blank steps never count.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from experiments.schema import Field, Int, TupleOf
from experiments.tasks.base import Task, register
from rhel_jax import losses

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CopyTask:
  """Task geometry; every number is a config field of the Copy-Paste experiment."""
  num_bits: int = 3
  pattern_length: int = 5
  steps_per_symbol: int = 2
  marker_steps: int = 1
  seq_len: int = 400

  def __post_init__(self):
    for name in ("num_bits", "pattern_length", "steps_per_symbol", "marker_steps", "seq_len"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"task.{name} must be a positive int, got {value!r}")
    if self.delay < 0:
      raise ValueError(f"task.seq_len={self.seq_len} is too short for a pattern and recall window of "
                       f"{self.window} steps each plus a {self.marker_steps}-step marker")

  @property
  def window(self) -> int:
    return self.pattern_length * self.steps_per_symbol

  @property
  def delay(self) -> int:
    return self.seq_len - 2 * self.window - self.marker_steps

  @property
  def n_in(self) -> int:
    return self.num_bits + 1

  @property
  def n_out(self) -> int:
    return self.num_bits

  def sample(self, key: Array, batch: int, dtype=jnp.float32) -> tuple[Array, Array, Array]:
    """A batch: inputs (batch, T, num_bits + 1), targets (batch, T, num_bits), mask (T,)."""
    symbols = jax.random.bernoulli(key, 0.5, (batch, self.pattern_length, self.num_bits)).astype(dtype)
    held = jnp.repeat(symbols, self.steps_per_symbol, axis=1)                  # (batch, window, bits)
    recall_start = self.seq_len - self.window
    marker_start = recall_start - self.marker_steps
    inputs = jnp.zeros((batch, self.seq_len, self.n_in), dtype)
    inputs = inputs.at[:, : self.window, : self.num_bits].set(held)
    inputs = inputs.at[:, marker_start:recall_start, self.num_bits].set(1.0)
    targets = jnp.zeros((batch, self.seq_len, self.num_bits), dtype).at[:, recall_start:].set(held)
    mask = (jnp.arange(self.seq_len) >= recall_start).astype(dtype)
    return inputs, targets, mask

  def memoryless_loss(self) -> float:
    """BCE of the best output that ignores the pattern (p = 1/2 per bit), in the units of ``bce``."""
    return self.window * self.num_bits * math.log(2.0)


def metrics(ys: Array, targets: Array, mask: Array, window: int | None = None) -> dict[str, Array]:
  """Per-bit recall accuracy and whole-pattern accuracy of logits ``ys`` on the masked window.

  ys, targets: (batch, T, bits); mask: (T,). Returns scalars averaged over the batch and, when
  ``window`` (the recall window's length; it ends the sequence) is given, ``acc_by_step``
  (window,): the per-bit accuracy at each recall step, which shows which symbols are recalled.
  """
  correct = ((ys > 0) == (targets > 0.5)).astype(jnp.float32)                   # (batch, T, bits)
  in_window = mask[None, :, None].astype(jnp.float32)
  bit_acc = jnp.sum(correct * in_window) / (jnp.sum(in_window) * ys.shape[0] * ys.shape[2])
  wrong_per_seq = jnp.sum((1.0 - correct) * in_window, axis=(1, 2))
  out = {"bit_acc": bit_acc, "pattern_acc": jnp.mean(wrong_per_seq == 0)}
  if window is not None:
    out["acc_by_step"] = jnp.mean(correct[:, ys.shape[1] - window:], axis=(0, 2))
  return out


@register
class CopyPaste(Task):
  """Copy-Paste with data generated on the device; each seed's test set comes from a fixed key."""
  name = "copy_paste"
  loss = "bce"
  primary_metric = "bit_acc"
  primary_description = "per-bit recall accuracy for Copy-Paste"
  summary_metrics = ("bit_acc", "pattern_acc", "loss_vs_memoryless")
  fraction_metrics = ("bit_acc", "pattern_acc")
  # The paper reports one RHEL row; both of our estimators are compared against it.
  paper_table1 = {"bptt": "99.46 ± 0.05", "rhel": "99.36 ± 0.02", "rhel_centered": "99.36 ± 0.02",
                  "eprop": "77.77 ± 0.25", "tbptt": "55.44 ± 6.14"}
  per_step_metric = "acc_by_step"
  per_step_caption = ("recall accuracy (%) at each step of the recall window, mean over seeds (50 = chance: "
                      "that step's symbol is not recalled)")
  per_step_prefix = "r"
  chance_level, target_level = 0.5, 0.99  # per-bit recall; the paper's level
  config_fields = (
      Field("task.num_bits", 3, Int(1)),
      Field("task.pattern_length", 5, Int(1)),
      Field("task.steps_per_symbol", 2, Int(1)),
      Field("task.marker_steps", 1, Int(1)),
      Field("task.seq_len", 400, Int(1), "total steps per sequence (pattern + delay + marker + recall window)"),
      Field("task.curriculum", (), TupleOf(Int(1), "a tuple of ints >= 1"),
            "curriculum over the delay: train at these lengths first (curriculum_stage_epochs epochs each), then "
            "at seq_len; () turns it off. Tests always use seq_len", legacy=()),
      Field("task.curriculum_stage_epochs", 10, Int(1), legacy=10),
  )

  def __init__(self, task: CopyTask, *, batch_size: int, eval_size: int, probe_size: int, steps_per_epoch: int,
               curriculum=(), curriculum_epochs: int = 10, dtype=jnp.float32):
    self.task = task
    self.n_in, self.n_out = task.n_in, task.n_out
    self.batch_size, self.eval_size, self.probe_size = batch_size, eval_size, probe_size
    self.steps_per_epoch = steps_per_epoch
    self.seq_len = task.seq_len
    self.curriculum = tuple(curriculum)
    self.curriculum_epochs = curriculum_epochs
    self.dtype = dtype

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, dtype) -> "CopyPaste":
    t = config.task
    task = CopyTask(num_bits=t.num_bits, pattern_length=t.pattern_length, steps_per_symbol=t.steps_per_symbol,
                    marker_steps=t.marker_steps, seq_len=t.seq_len)
    return cls(task, batch_size=config.batch_size, eval_size=config.eval_size,
               probe_size=config.alignment_batch_size, steps_per_epoch=config.steps_per_epoch,
               curriculum=t.curriculum, curriculum_epochs=t.curriculum_stage_epochs, dtype=dtype)

  @classmethod
  def check_relations(cls, config: ml_collections.ConfigDict) -> None:
    """Generated data has no epoch or test split of its own: steps_per_epoch and eval_size must be
    >= 1. The pattern, marker and recall window must fit in seq_len and in each curriculum length."""
    Int(1)(config.steps_per_epoch, "steps_per_epoch")
    Int(1)(config.eval_size, "eval_size")
    t = config.task
    shortest = 2 * t.pattern_length * t.steps_per_symbol + t.marker_steps
    if t.seq_len < shortest:
      raise ValueError(f"config.task.seq_len={t.seq_len} is shorter than the pattern, marker and recall "
                       "window together")
    lengths = t.curriculum
    if any(not shortest <= n <= t.seq_len for n in lengths):
      raise ValueError(f"config.task.curriculum must be a tuple of ints in [{shortest}, seq_len={t.seq_len}] "
                       f"(the pattern, marker and recall window need {shortest} steps), got {lengths!r}")

  def train_seq_len(self, epoch: int) -> int:
    """Training length in ``epoch``: ``curriculum[i]`` for stage i (``curriculum_stage_epochs``
    epochs each), then ``seq_len``. The delay grows; pattern, marker and window stay the same."""
    stage = epoch // self.curriculum_epochs if self.curriculum else 0
    return self.curriculum[stage] if stage < len(self.curriculum) else self.seq_len

  def _sample(self, key, batch, seq_len=None):
    task = self.task if seq_len in (None, self.seq_len) else dataclasses.replace(self.task, seq_len=seq_len)
    inputs, targets, mask = task.sample(key, batch, self.dtype)
    return inputs, targets, jnp.broadcast_to(mask, (batch, task.seq_len))

  def train_batch(self, data, key, step, seq_len=None):
    """A training batch of ``seq_len`` steps (a static int; default the task's ``seq_len``)."""
    del data  # generated from the key
    return self._sample(jax.random.fold_in(key, step), self.batch_size, seq_len)

  def test_set(self, key):
    return self._sample(key, self.eval_size)

  def probe_batch(self, key):
    return self._sample(key, self.probe_size)

  def metrics(self, ys, targets, mask):
    out = metrics(ys, targets, mask[0], window=self.task.window)
    loss = losses.bce(ys, targets, mask)
    return {**out, "loss": loss, "loss_vs_memoryless": loss / self.task.memoryless_loss()}

"""Copy-Paste (copy memory) task, generated on the device from a JAX key.

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

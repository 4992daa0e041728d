"""Losses on the readout trajectory ``ys (B, T, n_out)``.

Every loss is ``fn(ys, targets, mask) -> scalar`` and averages over the batch. The gradient
methods only need ``dL/dys``, which they take with ``jax.grad`` of the loss, so any
differentiable function of the readout trajectory works.
"""
from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
LossFn = Callable[[Array, Array, Array], Array]


def mse(ys: Array, targets: Array, mask: Array) -> Array:
  """Masked per-step 1/2 squared error, summed over outputs and time, mean over batch.

  ys, targets: (B, T, n_out); mask: (B, T).
  """
  per_step = 0.5 * jnp.sum((ys - targets) ** 2, -1)
  return jnp.mean(jnp.sum(mask * per_step, -1))


def bce(ys: Array, targets: Array, mask: Array) -> Array:
  """Masked per-step binary cross-entropy on logits, summed over outputs and time, mean over batch.

  ys: logits (B, T, n_out); targets: {0, 1} (B, T, n_out); mask: (B, T).
  """
  per_step = jnp.sum(optax.sigmoid_binary_cross_entropy(ys, targets), -1)
  return jnp.mean(jnp.sum(mask * per_step, -1))


POOLINGS = ("mean", "max", "last", "lse")


def pooled_logits(ys: Array, mask: Array, pooling: str = "mean") -> Array:
  """One logit vector per sequence from the per-step logits, over the valid steps only.

  ys: (B, T, n_out); mask: (B, T), > 0 on valid steps (each sequence needs one). ``pooling``:
  ``'mean'`` (the average), ``'max'`` (each class's largest logit), ``'last'`` (the last valid
  step) or ``'lse'`` (log of the mean of exp: a smooth max, between the mean and the max, whose
  gradient reaches every step in proportion to its softmax weight rather than one step per
  class). Returns (B, n_out).
  """
  valid = mask > 0
  if pooling == "mean":
    return jnp.sum(mask[..., None] * ys, 1) / jnp.sum(mask, 1)[:, None]
  if pooling == "max":
    return jnp.max(jnp.where(valid[..., None], ys, -jnp.inf), 1)
  if pooling == "last":
    steps = ys.shape[1]
    last = steps - 1 - jnp.argmax(valid[:, ::-1], 1)  # index of the last valid step
    return jnp.take_along_axis(ys, last[:, None, None], 1)[:, 0]
  if pooling == "lse":
    logs = jnp.where(valid[..., None], ys, -jnp.inf)
    return jax.nn.logsumexp(logs, 1) - jnp.log(jnp.sum(valid, 1))[:, None]
  raise ValueError(f"pooling: unknown {pooling!r}; choose one of {list(POOLINGS)}")


def _ce(logits: Array, targets: Array) -> Array:
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))


def ce_mean(ys: Array, targets: Array, mask: Array) -> Array:
  """Cross-entropy of the logits averaged over the valid steps of each sequence, mean over batch.

  ys: logits (B, T, n_out); targets: integer class ids (B,); mask: (B, T), 1 on valid
  (unpadded) steps. Each sequence needs at least one valid step.
  """
  return _ce(pooled_logits(ys, mask, "mean"), targets)


def ce_max(ys: Array, targets: Array, mask: Array) -> Array:
  """As :func:`ce_mean`, on each class's largest logit over the valid steps."""
  return _ce(pooled_logits(ys, mask, "max"), targets)


def ce_last(ys: Array, targets: Array, mask: Array) -> Array:
  """As :func:`ce_mean`, on the logits of each sequence's last valid step."""
  return _ce(pooled_logits(ys, mask, "last"), targets)


def ce_lse(ys: Array, targets: Array, mask: Array) -> Array:
  """As :func:`ce_mean`, on the log-mean-exp of each class's logits over the valid steps."""
  return _ce(pooled_logits(ys, mask, "lse"), targets)


# Classification losses (integer targets (B,)): ``ce_<pooling>``.
CLASSIFICATION_LOSSES = tuple(f"ce_{pooling}" for pooling in POOLINGS)


LOSSES: dict[str, LossFn] = {"mse": mse, "bce": bce, "ce_mean": ce_mean, "ce_max": ce_max, "ce_last": ce_last,
                           "ce_lse": ce_lse}


def classification_loss(pooling: str = "mean", label_smoothing: float = 0.0) -> LossFn:
  """The cross-entropy of the ``pooling``-pooled logits (:func:`pooled_logits`) against labels
  smoothed by ``label_smoothing`` in [0, 1): the target puts ``1 - label_smoothing`` on the class
  and spreads the rest evenly over all ``n_out`` classes (``optax.smooth_labels``). At 0 this is
  ``LOSSES[f"ce_{pooling}"]`` itself. Returns ``fn(ys (B, T, n_out), targets (B,), mask (B, T))``.
  """
  if pooling not in POOLINGS:
    raise ValueError(f"pooling: unknown {pooling!r}; choose one of {list(POOLINGS)}")
  if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
      or not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
  if label_smoothing == 0.0:
    return LOSSES[f"ce_{pooling}"]

  def ce_smoothed(ys: Array, targets: Array, mask: Array) -> Array:
    logits = pooled_logits(ys, mask, pooling)
    soft = optax.smooth_labels(jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype), label_smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits, soft))

  ce_smoothed.__name__ = f"ce_{pooling}_smoothed_{label_smoothing:g}"
  return ce_smoothed


def resolve_loss(loss: Union[str, LossFn]) -> LossFn:
  if callable(loss):
    return loss
  if loss not in LOSSES:
    raise ValueError(f"loss: unknown loss {loss!r}; choose one of {sorted(LOSSES)} "
                     "or pass a callable fn(ys, targets, mask) -> scalar")
  return LOSSES[loss]

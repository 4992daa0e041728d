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


def ce_mean(ys: Array, targets: Array, mask: Array) -> Array:
  """Cross-entropy of the logits averaged over the valid steps of each sequence, mean over batch.

  ys: logits (B, T, n_out); targets: integer class ids (B,); mask: (B, T), 1 on valid
  (unpadded) steps. Each sequence needs at least one valid step.
  """
  mean_logits = jnp.sum(mask[..., None] * ys, 1) / jnp.sum(mask, 1)[:, None]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(mean_logits, targets))


LOSSES: dict[str, LossFn] = {"mse": mse, "bce": bce, "ce_mean": ce_mean}


def resolve_loss(loss: Union[str, LossFn]) -> LossFn:
  if callable(loss):
    return loss
  if loss not in LOSSES:
    raise ValueError(f"loss: unknown loss {loss!r}; choose one of {sorted(LOSSES)} "
                     "or pass a callable fn(ys, targets, mask) -> scalar")
  return LOSSES[loss]

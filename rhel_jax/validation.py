"""Input checks for the public API: every failure is a ValueError that names the field.

Checks on values (finiteness, class-id range) run only on concrete arrays; under a trace
(inside the user's jit or vmap) only the static checks (shapes, dtypes, names) apply, and the
training loop watches for non-finite losses itself.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rhel_jax.losses import CLASSIFICATION_LOSSES
from rhel_jax.model import PARAM_NAMES, ModelConfig


def concrete(x) -> Optional[np.ndarray]:
  """x as a numpy array, or None if it is a tracer (its value is unknown)."""
  if isinstance(x, jax.core.Tracer):
    return None
  return np.asarray(x)


def _check_finite(name: str, x, hint: str = "") -> None:
  value = concrete(x)
  if value is not None and not np.all(np.isfinite(value)):
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    raise ValueError(f"{name}: contains {bad} non-finite value(s) (nan or inf)" + (f"; {hint}" if hint else ""))


def check_method(method, methods: Mapping) -> None:
  if not isinstance(method, str) or method not in methods:
    raise ValueError(f"method: unknown gradient method {method!r}; choose one of {sorted(methods)}")


def check_model(model) -> None:
  if not isinstance(model, ModelConfig):
    raise ValueError(f"model: expected a rhel_jax.ModelConfig, got {type(model).__name__}")


def check_positive(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_positive_int(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_params(params) -> dict:
  """Keys, shapes, a common float dtype and finiteness of the parameters. Returns a dict."""
  if not isinstance(params, Mapping):
    raise ValueError(f"params: expected a mapping with keys {PARAM_NAMES}, got {type(params).__name__}")
  missing = [k for k in PARAM_NAMES if k not in params]
  extra = [k for k in params if k not in PARAM_NAMES]
  if missing or extra:
    raise ValueError(f"params: missing keys {missing}, unexpected keys {extra}; expected {PARAM_NAMES}")
  params = {k: jnp.asarray(params[k]) for k in PARAM_NAMES}
  w = params["W"]
  if w.ndim != 2 or w.shape[0] != w.shape[1]:
    raise ValueError(f"params['W']: expected a square (N, N) matrix, got shape {w.shape}")
  n = w.shape[0]
  n_out = params["W_out"].shape[0] if params["W_out"].ndim == 2 else -1
  expected = {"b": (n,), "W_out": (n_out, n), "b_out": (n_out,)}
  for key, shape in expected.items():
    if params[key].shape != shape:
      raise ValueError(f"params['{key}']: expected shape {shape} (N={n}), got {params[key].shape}")
  if params["B"].ndim != 2 or params["B"].shape[1] != n:
    raise ValueError(f"params['B']: expected shape (n_in, {n}), got {params['B'].shape}")
  dtype = w.dtype
  for key, value in params.items():
    if not jnp.issubdtype(value.dtype, jnp.floating):
      raise ValueError(f"params['{key}']: expected a floating dtype, got {value.dtype}")
    if value.dtype != dtype:
      raise ValueError(f"params['{key}']: dtype {value.dtype} differs from params['W'] dtype {dtype}")
    _check_finite(f"params['{key}']", value)
  return params


def check_inputs(params, inputs):
  inputs = jnp.asarray(inputs)
  n_in = params["B"].shape[0]
  if inputs.ndim != 3 or inputs.shape[2] != n_in or inputs.shape[1] < 1 or inputs.shape[0] < 1:
    raise ValueError(f"inputs: expected shape (batch, T, n_in={n_in}) with batch, T >= 1, got {inputs.shape}")
  _check_finite("inputs", inputs)
  return inputs.astype(params["W"].dtype)


def check_data(params, inputs, targets, mask, loss):
  """Validates and casts ``inputs``, ``targets``, ``mask`` for the given loss name or callable."""
  inputs = check_inputs(params, inputs)
  batch, steps, _ = inputs.shape
  n_out = params["W_out"].shape[0]
  dtype = params["W"].dtype
  if mask is None:
    mask = jnp.ones((batch, steps), dtype)
  mask = jnp.asarray(mask)
  if mask.shape == (steps,):
    mask = jnp.broadcast_to(mask, (batch, steps))
  if mask.shape != (batch, steps):
    raise ValueError(f"mask: expected shape (batch={batch}, T={steps}) or (T,), got {mask.shape}")
  mask = mask.astype(dtype)
  _check_finite("mask", mask)
  targets = jnp.asarray(targets)
  if loss in ("mse", "bce"):
    if targets.shape != (batch, steps, n_out):
      raise ValueError(f"targets: loss {loss!r} expects shape (batch, T, n_out)="
                       f"{(batch, steps, n_out)}, got {targets.shape}")
    targets = targets.astype(dtype)
    _check_finite("targets", targets)
  elif loss in CLASSIFICATION_LOSSES:
    if targets.shape != (batch,) or not jnp.issubdtype(targets.dtype, jnp.integer):
      raise ValueError(f"targets: loss {loss!r} expects integer class ids of shape (batch,)="
                       f"({batch},), got {targets.dtype} {targets.shape}")
    value = concrete(targets)
    if value is not None and (value.min() < 0 or value.max() >= n_out):
      raise ValueError(f"targets: class ids must lie in [0, n_out={n_out}), got range "
                       f"[{value.min()}, {value.max()}]")
    mask_value = concrete(mask)
    if mask_value is not None and np.any(mask_value.sum(1) <= 0):
      raise ValueError(f"mask: loss {loss!r} needs at least one valid step in every sequence")
  return inputs, targets, mask


def check_finite_result(result, method: str, model: Optional[ModelConfig] = None) -> None:
  """Refuses a non-finite loss or gradient (outside a trace) instead of returning it."""
  loss, grads = result
  value = concrete(loss)
  if value is None:
    return
  hint = "the dynamics probably diverged (reduce ModelConfig.dt or the weight scale)"
  if model is not None and model.exact_reversible:
    hint += (f", or the integer grid overflowed (|phi|, |pi| must stay below 2**{30 - model.grid_bits}: "
             "lower ModelConfig.grid_bits)")
  if not np.isfinite(value):
    raise ValueError(f"loss: non-finite value {float(value)} from method {method!r}; {hint}")
  for key, leaf in grads.items():
    _check_finite(f"grads['{key}'] from method {method!r}", leaf, hint)

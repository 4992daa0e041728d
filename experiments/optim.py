"""The optimizer of the experiments: optax Adam (AdamW with weight decay) with a learning-rate schedule,
clipping and a learning-rate multiplier per parameter tensor."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import ml_collections
import optax

from rhel_jax.model import PARAM_NAMES

DECAYED_PARAMS = ("W", "B", "W_out")  # the matrices; biases are not decayed
# The fields of config.train that are plain numbers in the update, so a sweep may vmap over them
# (experiments.sweep); 'lr_scale.<tensor>' for each parameter tensor.
NUMERIC_FIELDS = ("lr", "weight_decay", "clip_norm", *(f"lr_scale.{k}" for k in PARAM_NAMES))


def make_optimizer(train: ml_collections.ConfigDict, total_steps: int,
                   values: Optional[Mapping[str, Any]] = None) -> optax.GradientTransformation:
  """The optimizer that ``config.train`` describes, for a run of ``total_steps`` steps.

  ``values`` overrides numeric fields (keys from ``NUMERIC_FIELDS``, e.g. ``{'lr': x, 'lr_scale.B': y}``)
  with scalars that may be traced: a sweep vmaps over them. A field named there takes the general
  form of its transformation (e.g. AdamW even at weight decay 0, which adds exactly 0), so one
  program serves every value of the sweep.
  """
  values = dict(values or {})
  unknown = sorted(set(values) - set(NUMERIC_FIELDS))
  if unknown:
    raise ValueError(f"config.train: {unknown} cannot be given per replica; numeric fields: {list(NUMERIC_FIELDS)}")
  get = lambda field: values.get(field, train.lr_scale[field[9:]] if field.startswith("lr_scale.") else train[field])
  peak = get("lr")
  if train.schedule == "constant":
    lr = peak
  elif train.schedule == "cosine":
    lr = optax.cosine_decay_schedule(peak, total_steps)
  else:  # 'warmup_cosine'
    if train.warmup_steps >= total_steps:
      raise ValueError(f"config.train.warmup_steps={train.warmup_steps} must be below the run's "
                       f"{total_steps} optimizer steps (num_epochs x steps per epoch)")
    lr = optax.warmup_cosine_decay_schedule(0.0, peak, train.warmup_steps, total_steps)
  parts = [optax.clip_by_global_norm(get("clip_norm"))] if "clip_norm" in values or train.clip_norm > 0 else []
  if "weight_decay" in values or train.weight_decay > 0:
    # Frozen tensors get zero gradients; they must not decay either.
    decayed = lambda params: {k: k in DECAYED_PARAMS and k not in train.frozen_params for k in params}
    parts.append(optax.adamw(lr, weight_decay=get("weight_decay"), mask=decayed))
  else:  # plain Adam, bit for bit as before weight decay existed
    parts.append(optax.adam(lr))
  # Each tensor's own step size, e.g. W's (its slowest modes sit near the stability edge). A tensor
  # at 1 gets no transformation, so runs from before the multipliers existed keep their bits and
  # their checkpoints' structure.
  for name in PARAM_NAMES:
    field = f"lr_scale.{name}"
    if field in values or train.lr_scale[name] != 1.0:
      parts.append(optax.masked(optax.scale(get(field)), lambda params, name=name: {k: k == name for k in params}))
  return optax.chain(*parts)

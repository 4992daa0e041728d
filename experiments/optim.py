"""The optimizer of the experiments: optax Adam (AdamW with weight decay) with a learning-rate schedule,
clipping and W's own step size."""
from __future__ import annotations

import ml_collections
import optax


DECAYED_PARAMS = ("W", "B", "W_out")  # the matrices; biases are not decayed


def make_optimizer(train: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  if train.schedule == "constant":
    lr = train.lr
  elif train.schedule == "cosine":
    lr = optax.cosine_decay_schedule(train.lr, total_steps)
  else:  # 'warmup_cosine'
    if train.warmup_steps >= total_steps:
      raise ValueError(f"config.train.warmup_steps={train.warmup_steps} must be below the run's "
                       f"{total_steps} optimizer steps (num_epochs x steps per epoch)")
    lr = optax.warmup_cosine_decay_schedule(0.0, train.lr, train.warmup_steps, total_steps)
  parts = [optax.clip_by_global_norm(train.clip_norm)] if train.clip_norm > 0 else []
  if train.weight_decay > 0:
    # Frozen tensors get zero gradients; they must not decay either.
    decayed = lambda params: {k: k in DECAYED_PARAMS and k not in train.frozen_params for k in params}
    parts.append(optax.adamw(lr, weight_decay=train.weight_decay, mask=decayed))
  else:  # plain Adam, bit for bit as before weight decay existed
    parts.append(optax.adam(lr))
  if train.w_lr_scale != 1.0:  # W's own step size (its slowest modes sit near the stability edge)
    parts.append(optax.masked(optax.scale(train.w_lr_scale), lambda params: {k: k == "W" for k in params}))
  return optax.chain(*parts)

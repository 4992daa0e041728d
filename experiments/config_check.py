"""Checks every config field before any compute; errors name the field (``config.model.dt``)."""
from __future__ import annotations

import math

from rhel_jax.methods import METHODS, all_options
from rhel_jax.model import ACTIVATIONS, PARAM_NAMES

_SCHEDULES = ("constant", "cosine", "warmup_cosine")


def _int(config, path: str, minimum: int = 1) -> None:
  value = _get(config, path)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"config.{path} must be an int >= {minimum}, got {value!r}")


def _float(config, path: str, *, positive: bool = True, nonnegative: bool = False) -> None:
  value = _get(config, path)
  ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
  if ok and positive and not nonnegative:
    ok = value > 0
  if ok and nonnegative:
    ok = value >= 0
  if not ok:
    need = ">= 0" if nonnegative else ("> 0" if positive else "finite")
    raise ValueError(f"config.{path} must be a number {need}, got {value!r}")


def _choice(config, path: str, choices) -> None:
  value = _get(config, path)
  if value not in choices:
    raise ValueError(f"config.{path} must be one of {list(choices)}, got {value!r}")


def _get(config, path: str):
  node = config
  for part in path.split("."):
    if part not in node:
      raise ValueError(f"config.{path} is missing")
    node = node[part]
  return node


def validate_config(config) -> None:
  """Raises ValueError naming the first invalid field."""
  _choice(config, "task.name", ("copy_paste", "heidelberg_digits"))
  for path in ("num_seeds", "num_epochs", "batch_size", "checkpoint_every", "alignment_batch_size",
               "model.num_hidden"):
    _int(config, path)
  _int(config, "seed", minimum=0)
  _int(config, "num_devices", minimum=0)
  if not isinstance(_get(config, "distributed"), bool):
    raise ValueError(f"config.distributed must be a bool, got {config.distributed!r}")
  methods = _get(config, "methods")
  if isinstance(methods, str) or not isinstance(methods, (tuple, list)) or not methods:
    raise ValueError(f"config.methods must be a non-empty tuple of method names, got {methods!r}")
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"config.methods: unknown method {m!r}; choose from {sorted(METHODS)}")
  if len(set(methods)) != len(methods):
    raise ValueError(f"config.methods lists a method twice: {methods!r}")
  epochs = _get(config, "alignment_epochs")
  if isinstance(epochs, (str, int)) or any(
      isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < config.num_epochs for e in epochs):
    raise ValueError(f"config.alignment_epochs must be a tuple of ints in [0, num_epochs={config.num_epochs}), "
                     f"got {epochs!r}")
  for path in ("model.beta", "model.dt", "train.lr", "model.w_scale", "model.in_scale", "model.out_scale"):
    _float(config, path)
  for option in all_options():  # every method's options, whether or not the method is configured
    path = f"method.{option.config_key}"
    value = _get(config, path)
    if value is not None or option.default is not None:  # None: the option's default_fn
      (_int if option.kind == "positive_int" else _float)(config, path)
  _float(config, "model.alpha", positive=False)
  _float(config, "model.b_scale", nonnegative=True)
  _float(config, "train.clip_norm", nonnegative=True)
  _float(config, "train.w_lr_scale", nonnegative=True)
  _int(config, "train.warmup_steps", minimum=0)
  _choice(config, "model.rho", ACTIVATIONS)
  if not isinstance(_get(config, "model.exact_reversible"), bool):
    raise ValueError(f"config.model.exact_reversible must be a bool, got {config.model.exact_reversible!r}")
  _int(config, "model.grid_bits", minimum=4)
  if config.model.grid_bits > 26:
    raise ValueError(f"config.model.grid_bits must be an int in [4, 26], got {config.model.grid_bits!r}")
  _choice(config, "model.dtype", ("float32", "float64"))
  _choice(config, "train.optimizer", ("adam",))
  _choice(config, "train.schedule", _SCHEDULES)
  if config.task.name == "heidelberg_digits":
    _int(config, "steps_per_epoch", minimum=0)
    for path in ("data.sample_rate", "data.n_mels", "data.time_downsample", "data.standin_speakers",
                 "data.standin_trials"):
      _int(config, path)
    for path in ("data.max_frames", "data.num_validation_speakers", "data.standin_seed"):
      _int(config, path, minimum=0)
    _float(config, "data.win_ms")
    _float(config, "data.hop_ms")
  if config.task.name == "copy_paste":
    _int(config, "steps_per_epoch")
    _int(config, "eval_size")
    for path in ("task.num_bits", "task.pattern_length", "task.steps_per_symbol", "task.marker_steps",
                 "task.seq_len"):
      _int(config, path)
    t = config.task
    shortest = 2 * t.pattern_length * t.steps_per_symbol + t.marker_steps
    if t.seq_len < shortest:
      raise ValueError(f"config.task.seq_len={t.seq_len} is shorter than the pattern, marker and recall "
                       "window together")
    _int(config, "task.curriculum_stage_epochs")
    lengths = _get(config, "task.curriculum")
    if isinstance(lengths, (str, int)) or any(
        isinstance(n, bool) or not isinstance(n, int) or not shortest <= n <= t.seq_len for n in lengths):
      raise ValueError(f"config.task.curriculum must be a tuple of ints in [{shortest}, seq_len={t.seq_len}] "
                       f"(the pattern, marker and recall window need {shortest} steps), got {lengths!r}")
  frozen = _get(config, "train.frozen_params")
  if isinstance(frozen, str) or not isinstance(frozen, (tuple, list)) or any(k not in PARAM_NAMES for k in frozen):
    raise ValueError(f"config.train.frozen_params must be a tuple of names from {list(PARAM_NAMES)}, got {frozen!r}")
  _choice(config, "model.w_init", ("gaussian", "spectral"))
  if config.model.w_init == "spectral":
    _float(config, "model.omega_min")
    _float(config, "model.omega_max")
    m = config.model
    if m.omega_max < m.omega_min:
      raise ValueError(f"config.model.omega_max={m.omega_max} is below config.model.omega_min={m.omega_min}")
    if m.dt * m.omega_max >= 2:
      raise ValueError(f"config.model.omega_max={m.omega_max} with config.model.dt={m.dt}: the leapfrog is "
                       "unstable for dt * omega >= 2")

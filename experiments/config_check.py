"""Checks every config field before any compute; errors name the field (``config.model.dt``)."""
from __future__ import annotations

from experiments import recipes, sweep, tasks
from experiments.config_fields import bool_field, choice_field, float_field, get_field, int_field
from rhel_jax.methods import METHODS, all_options
from rhel_jax.model import ACTIVATIONS, PARAM_NAMES

_SCHEDULES = ("constant", "cosine", "warmup_cosine")


def validate_config(config) -> None:
  """Raises ValueError naming the first invalid field."""
  task = tasks.get(get_field(config, "task.name"))
  for path in ("num_seeds", "num_epochs", "batch_size", "checkpoint_every", "alignment_batch_size",
               "model.num_hidden"):
    int_field(config, path)
  int_field(config, "seed", minimum=0)
  int_field(config, "num_devices", minimum=0)
  if not isinstance(get_field(config, "distributed"), bool):
    raise ValueError(f"config.distributed must be a bool, got {config.distributed!r}")
  methods = get_field(config, "methods")
  if isinstance(methods, str) or not isinstance(methods, (tuple, list)) or not methods:
    raise ValueError(f"config.methods must be a non-empty tuple of method names, got {methods!r}")
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"config.methods: unknown method {m!r}; choose from {sorted(METHODS)}")
  if len(set(methods)) != len(methods):
    raise ValueError(f"config.methods lists a method twice: {methods!r}")
  epochs = get_field(config, "alignment_epochs")
  if isinstance(epochs, (str, int)) or any(
      isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < config.num_epochs for e in epochs):
    raise ValueError(f"config.alignment_epochs must be a tuple of ints in [0, num_epochs={config.num_epochs}), "
                     f"got {epochs!r}")
  for path in ("model.beta", "model.dt", "train.lr", "model.w_scale", "model.in_scale", "model.out_scale"):
    float_field(config, path)
  for option in all_options():  # every method's options, whether or not the method is configured
    path = f"method.{option.config_key}"
    value = get_field(config, path)
    if value is not None or option.default is not None:  # None: the option's default_fn
      {"positive_int": int_field, "bool": bool_field}.get(option.kind, float_field)(config, path)
  float_field(config, "model.alpha", positive=False)
  float_field(config, "model.b_scale", nonnegative=True)
  float_field(config, "train.clip_norm", nonnegative=True)
  for name in PARAM_NAMES:
    float_field(config, f"train.lr_scale.{name}", nonnegative=True)
  extra = sorted(set(get_field(config, "train.lr_scale")) - set(PARAM_NAMES))
  if extra:
    raise ValueError(f"config.train.lr_scale: unknown tensor(s) {extra}; choose from {list(PARAM_NAMES)}")
  float_field(config, "train.weight_decay", nonnegative=True)
  int_field(config, "train.warmup_steps", minimum=0)
  choice_field(config, "model.rho", ACTIVATIONS)
  bool_field(config, "model.exact_reversible")
  if get_field(config, "model.unroll") is not None:
    int_field(config, "model.unroll")
  int_field(config, "model.grid_bits", minimum=4)
  if config.model.grid_bits > 26:
    raise ValueError(f"config.model.grid_bits must be an int in [4, 26], got {config.model.grid_bits!r}")
  choice_field(config, "model.dtype", ("float32", "float64"))
  choice_field(config, "train.optimizer", ("adam",))
  choice_field(config, "train.schedule", _SCHEDULES)
  task.validate_config(config)
  recipes.validate(config)
  for method in methods:  # each method's recipe must give a valid run
    changes = recipes.fields(config, method)
    if changes:
      try:
        validate_config(recipes.apply(config, method))
      except ValueError as e:
        raise ValueError(f"config.recipes.{method}: {e}") from None
      clash = sorted(set(changes) & set(get_field(config, "sweep") or {}))
      if clash:
        raise ValueError(f"config.sweep sweeps {clash}, which config.recipes.{method} sets: drop one of them")
  all_settings = sweep.settings(config)
  if all_settings[0].values:  # each setting must be a valid run of its own
    for s in all_settings:
      try:
        validate_config(sweep.setting_config(config, s))
      except ValueError as e:
        raise ValueError(f"config.sweep: setting {s.label}: {e}") from None
      if "train.clip_norm" in s.values and s.values["train.clip_norm"] <= 0:
        raise ValueError(f"config.sweep['train.clip_norm']: {s.values['train.clip_norm']!r}; a swept clip norm must "
                         "be > 0 (0 turns clipping off, which changes the program: run it separately)")
      if "method.eps" in s.values and s.values["method.eps"] <= 0:
        raise ValueError(f"config.sweep['method.eps']: {s.values['method.eps']!r} must be > 0")
  frozen = get_field(config, "train.frozen_params")
  if isinstance(frozen, str) or not isinstance(frozen, (tuple, list)) or any(k not in PARAM_NAMES for k in frozen):
    raise ValueError(f"config.train.frozen_params must be a tuple of names from {list(PARAM_NAMES)}, got {frozen!r}")
  choice_field(config, "model.w_init", ("gaussian", "spectral"))
  if config.model.w_init == "spectral":
    float_field(config, "model.omega_min")
    float_field(config, "model.omega_max")
    m = config.model
    if m.omega_max < m.omega_min:
      raise ValueError(f"config.model.omega_max={m.omega_max} is below config.model.omega_min={m.omega_min}")
    if m.dt * m.omega_max >= 2:
      raise ValueError(f"config.model.omega_max={m.omega_max} with config.model.dt={m.dt}: the leapfrog is "
                       "unstable for dt * omega >= 2")

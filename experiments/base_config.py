"""The fields every experiment shares (seeds and devices, the model, the gradient methods' options,
training), declared once each (``experiments/schema.py``), and :func:`get_config`, which builds a
task's config from them, the task's own fields (``Task.config_fields``) and a variant's values.
"""
from __future__ import annotations

from typing import Any, Optional

import ml_collections

from experiments import tasks
from experiments.schema import (BOOL, FINITE, NONNEGATIVE, POSITIVE, STRING, Check, Field, Int, Maybe, OneOf,
                                Section, TupleOf, build, set_values)
from rhel_jax.methods import METHODS, all_options
from rhel_jax.model import ACTIVATIONS, PARAM_NAMES

SCHEDULES = ("constant", "cosine", "warmup_cosine")

_METHODS = TupleOf(Check(lambda m: isinstance(m, str) and m in METHODS, ""),
                   lambda: f"a non-empty tuple of distinct method names from {sorted(METHODS)}", nonempty=True,
                   distinct=True)

_TASK_NAME = Check(lambda v: isinstance(v, str) and v in tasks.TASKS, lambda: f"one of {sorted(tasks.TASKS)}")

FIELDS = (
    Field("name", "base", STRING, "name of the run; the default workdir is runs/<name>"),
    Field("seed", 0, Int(0), "root seed; seed i of the sweep uses jax.random.split(key(seed), num_seeds)[i]"),
    Field("num_seeds", 5, Int(1), "seeds trained at once by one vmapped, jitted program"),
    Field("num_devices", 0, Int(0), "devices the seeds are sharded over (0 = all local devices); num_seeds "
          "must be a multiple"),
    Field("distributed", False, BOOL, "call jax.distributed.initialize() first, for several hosts (BUILD.md)"),
    Field("methods", ("bptt", "rhel", "rhel_centered", "eprop", "tbptt"), _METHODS,
          "gradient methods (names from rhel_jax.METHODS), trained one after the other in one invocation"),
    Field("num_epochs", 200, Int(1), "training length: num_epochs x steps_per_epoch optimizer steps"),
    Field("steps_per_epoch", 50, Int(0), "0: the task's own epoch (one pass over a dataset), where it has one"),
    Field("batch_size", 64, Int(1)),
    Field("eval_size", 1024, Int(0), "test set size per seed (tasks with a fixed test split ignore it)"),
    Field("checkpoint_every", 10, Int(1), "checkpoint every this many epochs (and at the end); the two newest "
          "are kept"),
    Field("alignment_epochs", (0, 100, 199), TupleOf(Int(0), "a tuple of ints >= 0"),
          "epochs (start of) at which each method's gradient is compared with BPTT's on a probe batch"),
    Field("alignment_batch_size", 64, Int(1)),
    Field("recipes", ml_collections.ConfigDict(),
          Check(lambda v: isinstance(v, (dict, ml_collections.ConfigDict)), "a ConfigDict {method: recipe}"),
          "per-method recipes: recipes.<method> holds the train.* / method.* fields that differ for that "
          "method (experiments.recipes); the sections below are the shared recipe", legacy={}),
    Field("sweep", {}, Check(lambda v: isinstance(v, (dict, ml_collections.ConfigDict)),
                             "a dict {'dotted.field': (values, ...)}"),
          "a vmapped hyperparameter sweep {'dotted.field': (values, ...)} over numeric fields of the update "
          "(experiments.sweep.SWEEPABLE); every combination trains beside the seeds in one program",
          legacy={}, type=object),

    Section("model", "the Hamiltonian RNN (rhel_jax.ModelConfig) and its initialisation"),
    Field("model.num_hidden", 64, Int(1)),
    Field("model.alpha", 1.0, FINITE),
    Field("model.beta", 1.0, POSITIVE),
    Field("model.dt", 0.5, POSITIVE),
    Field("model.rho", "tanh", OneOf(*ACTIVATIONS)),
    Field("model.w_init", "gaussian", OneOf("gaussian", "spectral"),
          "W init: 'gaussian' (W ~ w_scale N(0, 1/N)) or 'spectral': the linearised network's mode frequencies "
          "~ U(omega_min, omega_max) (rhel_jax.spectral_weights; the leapfrog needs dt * omega_max < 2)",
          legacy="gaussian"),
    Field("model.omega_min", 0.3, POSITIVE, legacy=0.1),
    Field("model.omega_max", 3.0, POSITIVE, legacy=3.0),
    Field("model.w_scale", 0.5, POSITIVE),
    Field("model.in_scale", 0.5, POSITIVE, "B ~ in_scale N(0, 1/n_in)"),
    Field("model.b_scale", 0.1, NONNEGATIVE, "b ~ b_scale N(0, 1)"),
    Field("model.out_scale", 1.0, POSITIVE),
    Field("model.dtype", "float32", OneOf("float32", "float64"), "float64 turns on jax_enable_x64"),
    Field("model.exact_reversible", False, BOOL,
          "RHEL phases on an integer grid of step 2**-grid_bits, so the echo retraces the forward phase bit "
          "for bit (README, 'Exact-reversible mode'); the other methods ignore it"),
    Field("model.grid_bits", 26, Int(4, 26)),
    # Time steps per iteration of every scan over time, the same for every method; None: the
    # backend's default (rhel_jax.model.DEFAULT_UNROLL: 1 on CPU, where the runs before it were made).
    Field("model.unroll", None, Maybe(Int(1)), "scan unroll (None: per backend)", legacy=None, type=int),

    Section("method", "the gradient methods' options, one field per registered option (method_fields)"),

    Section("train"),
    Field("train.optimizer", "adam", OneOf("adam")),
    Field("train.lr", 3e-3, POSITIVE),
    Field("train.schedule", "constant", OneOf(*SCHEDULES), "'cosine': decay to 0 over the run"),
    Field("train.warmup_steps", 0, Int(0)),
    Field("train.clip_norm", 1.0, NONNEGATIVE, "global-norm gradient clipping; 0 turns it off"),
    Field("train.weight_decay", 0.0, NONNEGATIVE,
          "decoupled weight decay (AdamW: each step shrinks W, B and W_out, not the biases, by lr x this)",
          legacy=0.0),
    Section("train.lr_scale", "learning-rate multiplier of each parameter tensor (e.g. W's, whose slowest modes "
            "sit near the stability edge)", item="tensor"),
    *(Field(f"train.lr_scale.{k}", 1.0, NONNEGATIVE, legacy=1.0,
            renamed_from="train.w_lr_scale" if k == "W" else None) for k in PARAM_NAMES),
    Field("train.frozen_params", (), TupleOf(OneOf(*PARAM_NAMES), f"a tuple of names from {list(PARAM_NAMES)}"),
          "parameters kept at their initial values, e.g. ('W',) to see what a method does with the input and "
          "readout alone", legacy=()),
)


def method_fields() -> tuple[Field, ...]:
  """``config.method.<config_key>``: one field per registered method option (``rhel_jax.METHODS``),
  declared by the registry: its default, its kind's check and its legacy value. An option whose
  default is None (computed from dtype and model, e.g. eps) is a typed field that may be set to a
  value or back to None."""
  out = []
  for option in all_options():
    kind = (OneOf(*option.choices) if option.kind == "choice"
            else {"positive_int": Int(1), "bool": BOOL}.get(option.kind, POSITIVE))
    out.append(Field(f"method.{option.config_key}", option.default,
                     Maybe(kind) if option.default is None else kind, option.doc, legacy=option.legacy,
                     type=(int if option.kind == "positive_int" else float) if option.default is None else None))
  return tuple(out)


def declarations(task: Optional[str] = None) -> tuple:
  """Every declared field of a config of ``task`` (a registered task name; None: the shared ones)."""
  out = (*FIELDS, *method_fields())
  if task is None:
    return out
  cls = tasks.get(task)
  return (*out, Field("task.name", cls.name, _TASK_NAME, "which task (experiments.tasks)"), *cls.config_fields)


def check_relations(config) -> None:
  """Checks between shared fields (each field alone: ``schema.check``); errors name the fields."""
  epochs = config.alignment_epochs
  if any(e >= config.num_epochs for e in epochs):
    raise ValueError(f"config.alignment_epochs must be a tuple of ints in [0, num_epochs={config.num_epochs}), "
                     f"got {epochs!r}")
  m = config.model
  if m.w_init == "spectral":
    if m.omega_max < m.omega_min:
      raise ValueError(f"config.model.omega_max={m.omega_max} is below config.model.omega_min={m.omega_min}")
    if m.dt * m.omega_max >= 2:
      raise ValueError(f"config.model.omega_max={m.omega_max} with config.model.dt={m.dt}: the leapfrog is "
                       "unstable for dt * omega >= 2")


def get_config(task: str, values: Optional[dict[str, Any]] = None, name: str = "base") -> ml_collections.ConfigDict:
  """The config of ``task``: every declared field at its default, then ``values`` ({dotted field:
  value}: what a variant chooses), and ``name``. A key of ``values`` that is no field is a ValueError."""
  c = build(declarations(task))
  c.name = name
  set_values(c, dict(values or {}), where=f"config {name!r}")
  return c

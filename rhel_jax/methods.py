"""The registry of gradient methods: one :class:`Method` record per method carries its contract.

Everything that needs to know about methods reads it from here: :func:`rhel_jax.gradient` (names,
options, defaults, validation), the trainer and the config checks (``config.method.<option>``),
the report (display order, colours) and the benchmarks. A new method is one function with the
signature below plus one ``register(Method(...))``; the contract test in
``tests/test_method_contract.py`` then runs it automatically.

Method functions: ``fn(params, model, inputs_tm, targets, mask, loss_fn, **options) -> (loss, grads)``
with ``inputs_tm`` time-major (T, B, n_in) and grads a dict shaped like params. Call sites do not
call them directly: :meth:`Method.bind` fixes the model, the loss and the options once and gives
``(params, inputs (B, T, n_in), targets, mask) -> (loss, grads)``.

A method may also have a *VJP form* (:attr:`Method.vjp`): the network as a layer whose backward
pass under ``jax.grad`` is the method (see :mod:`rhel_jax.layer`); the flax layer
(:class:`rhel_jax.nn.HamiltonianRNN`) offers exactly the methods that have one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Optional, Union

import jax
import jax.numpy as jnp

from rhel_jax import validation
from rhel_jax.losses import LossFn, resolve_loss

_KINDS = ("positive_float", "positive_int", "bool", "choice")


class _SinceStart:
  """The ``legacy`` of an option (or config field) that every saved config has: there is no older
  config without it to reproduce."""

  def __repr__(self):
    return "SINCE_START"


SINCE_START = _SinceStart()


@dataclasses.dataclass(frozen=True)
class Option:
  """A keyword option of a method.

  Attributes:
    name: keyword of the method function and of :func:`rhel_jax.gradient`.
    default: value when none is given; ``None`` defers to ``default_fn``.
    kind: ``'positive_float'``, ``'positive_int'``, ``'bool'`` or ``'choice'`` (one of ``choices``):
      what :meth:`check` enforces.
    static: a compile-time constant under ``jit`` (e.g. a window length that sets shapes);
      otherwise the value is traced, so changing it does not recompile.
    config_key: the field ``config.method.<config_key>`` of the experiment configs.
    doc: one line for config comments and error messages.
    default_fn: ``(param dtype, ModelConfig) -> value``, used when the value is ``None``.
    choices: the accepted values of a ``'choice'`` option.
    legacy: the value that gives the method's behaviour from before the option existed; experiment
      configs saved without ``config.method.<config_key>`` resume at it. ``SINCE_START``: the
      method has always had the option.
  """
  name: str
  default: Any
  kind: str
  static: bool = False
  config_key: str = ""
  doc: str = ""
  default_fn: Optional[Callable[[Any, Any], Any]] = None
  choices: tuple = ()
  legacy: Any = SINCE_START

  def __post_init__(self):
    if self.kind not in _KINDS:
      raise ValueError(f"Option {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")
    if (self.kind == "choice") != bool(self.choices):
      raise ValueError(f"Option {self.name!r}: choices are given exactly when kind is 'choice'")
    if not self.config_key:
      object.__setattr__(self, "config_key", self.name)

  def resolve(self, value, dtype, model):
    """The value to use: ``value``, else the default (computed by ``default_fn`` if it is None)."""
    value = self.default if value is None else value
    if value is None and self.default_fn is not None:
      value = self.default_fn(dtype, model)
    return value

  def check(self, value, where: str = "") -> None:
    """Raises ValueError naming ``where`` (default: the option's name) for a bad value."""
    name = where or self.name
    if self.kind == "positive_int":
      validation.check_positive_int(name, value)
    elif self.kind == "bool":
      if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    elif self.kind == "choice":
      if not isinstance(value, str) or value not in self.choices:
        raise ValueError(f"{name} must be one of {list(self.choices)}, got {value!r}")
    else:
      validation.check_positive(name, value)


@dataclasses.dataclass(frozen=True)
class Method:
  """A gradient method and its contract.

  Attributes:
    name: the name users pass (``gradient('rhel', ...)``, ``config.methods``).
    fn: the method function (signature in the module docstring).
    options: its keyword options.
    bptt_rtol: the largest relative error ``|g - g_bptt| / |g_bptt|`` per tensor the method
      promises against ``jax.grad`` on the contract test's small float64 problem (``inf`` for
      the approximate baselines, which are still run by every other contract check).
    trained: the parameter tensors the method gives a gradient; the others must come back zero.
    symmetric_w: whether the ``W`` gradient is symmetric (every method of the symmetric
      Hamiltonian's ``W`` should be).
    color: matplotlib colour in the report's figures.
    summary: one line for listings.
    vjp: the method's VJP form, ``fn(params, model, inputs_tm, **options) -> rho(phi) (T, B, N)``
      with params ``{'W', 'b', 'B'}`` and inputs_tm (T, B, n_in): the network's activations, whose
      VJP under ``jax.grad`` is this method's gradient (of the params and of the inputs); None when
      the method has none (:mod:`rhel_jax.layer`).
  """
  name: str
  fn: Callable
  options: tuple[Option, ...] = ()
  bptt_rtol: float = math.inf
  trained: tuple[str, ...] = ("W", "b", "B", "W_out", "b_out")
  symmetric_w: bool = True
  color: Optional[str] = None
  summary: str = ""
  vjp: Optional[Callable] = None

  @property
  def option_names(self) -> tuple[str, ...]:
    return tuple(o.name for o in self.options)

  def option(self, name: str) -> Option:
    for o in self.options:
      if o.name == name:
        return o
    raise KeyError(name)

  def _check_names(self, given) -> None:
    unknown = sorted(set(given) - set(self.option_names))
    if unknown:
      raise ValueError(f"gradient: option(s) {unknown} not accepted by method {self.name!r}; "
                       f"it takes {sorted(self.option_names) or 'none'}")

  def resolve_options(self, given: dict, dtype, model) -> dict:
    """Validated options: unknown names are an error; missing ones get their defaults.

    A traced value (an option swept under ``vmap``, or passed into ``jit``) is taken as it is:
    only concrete values can be checked.
    """
    self._check_names(given)
    out = {}
    for o in self.options:
      out[o.name] = o.resolve(given.get(o.name), dtype, model)
      if not isinstance(out[o.name], jax.core.Tracer):
        o.check(out[o.name])
    return out

  def bind(self, model, loss: Union[str, LossFn] = "mse", **options) -> Callable:
    """This method with its model, loss and options fixed, batch-major.

    Returns ``fn(params, inputs (B, T, n_in), targets, mask) -> (loss, grads)``: traceable (jit,
    vmap, grad) and unchecked; :func:`rhel_jax.gradient` is the checked entry point. Option names
    and concrete values are checked here; defaults that depend on the parameters' dtype (eps) are
    resolved at the call. Shapes of targets and mask as in :func:`rhel_jax.gradient`.
    """
    self._check_names(options)
    for name, value in options.items():
      if value is not None and not isinstance(value, jax.core.Tracer):
        self.option(name).check(value)
    loss_fn = resolve_loss(loss)

    def fn(params, inputs, targets, mask):
      resolved = self.resolve_options(options, params["W"].dtype, model)
      return self.fn(params, model, jnp.swapaxes(inputs, 0, 1), targets, mask, loss_fn, **resolved)
    return fn


# Registration order is the display order (Table 1's rows, then any others).
METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
  """Adds ``method`` to the registry (an existing name is an error unless ``replace``)."""
  if not isinstance(method, Method):
    raise TypeError(f"register: expected a rhel_jax.Method, got {type(method).__name__}")
  if method.name in METHODS and not replace:
    raise ValueError(f"register: a method named {method.name!r} is already registered")
  METHODS[method.name] = method
  return method


def unregister(name: str) -> None:
  METHODS.pop(name, None)


def get(name) -> Method:
  """The registered method ``name``; ValueError listing the known names otherwise."""
  validation.check_method(name, METHODS)
  return METHODS[name]


def all_options() -> Iterator[Option]:
  """Every distinct option over the registry (a shared option, like ``eps``, once)."""
  seen = set()
  for method in METHODS.values():
    for o in method.options:
      if o.config_key not in seen:
        seen.add(o.config_key)
        yield o


def layer_methods() -> tuple[str, ...]:
  """Names of the methods with a VJP form (:attr:`Method.vjp`), in registry order: the methods of
  :func:`rhel_jax.layer.hamiltonian_layer` and :class:`rhel_jax.nn.HamiltonianRNN`."""
  return tuple(name for name, method in METHODS.items() if method.vjp is not None)


def nudged() -> tuple[str, ...]:
  """Names of the methods that take a nudge ``eps`` (the RHEL estimators), in registry order."""
  return tuple(name for name, method in METHODS.items() if "eps" in method.option_names)

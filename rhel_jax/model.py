"""The Hopfield-style Hamiltonian RNN: parameters, potential, force and readout.

State is ``(phi, pi)``, each ``(..., N)``; every function here accepts any leading batch
dims, so one code path serves a single sequence, a batch, and the stacked +/-eps echoes.

    V(phi; u) = alpha/2 |phi|^2 + 1/(2 beta) rho(phi)^T Ws rho(phi) + b^T rho(phi) + u^T B rho(phi)
    H(phi, pi) = 1/2 |pi|^2 + V(phi)

``Ws = (W + W^T)/2`` is the symmetrised stored matrix. All gradients (BPTT's and the Hebbian
ones) are with respect to the *stored* ``W``; since V only sees its symmetric part, they are
symmetric, and equal to the gradient with respect to ``Ws`` on the diagonal and half of it off
the diagonal.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

Array = jax.Array
Params = Mapping[str, Array]
PARAM_NAMES = ("W", "b", "B", "W_out", "b_out")
HAMILTONIAN_PARAMS = ("W", "b", "B")  # enter V; W_out, b_out only feed the readout


def _sigmoid_prime(x):
  s = jax.nn.sigmoid(x)
  return s * (1.0 - s)


# Closed-form derivatives: rho' sits on the hot path of every step.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2),
    "sigmoid": (jax.nn.sigmoid, _sigmoid_prime),
    "identity": (lambda x: x, jnp.ones_like),
}


def _tanh_difference(x, d):
  # tanh(x+d) - tanh(x) = tanh(d) (1 - t^2) / (1 + t tanh(d)): no cancellation for small d. For
  # |d| >= 1/2 the plain difference loses nothing, while the closed form can reach 0/0 once t and
  # tanh(d) both round to +-1 (a far-deviated echo, e.g. in chaotic dynamics).
  t, td = jnp.tanh(x), jnp.tanh(d)
  small = td * ((1.0 - t) * (1.0 + t)) / (1.0 + t * td)
  dr = jnp.where(jnp.abs(d) < 0.5, small, jnp.tanh(x + d) - t)
  return dr, -dr * (2.0 * t + dr)  # rho' = 1 - t^2


def _sigmoid_difference(x, d):
  dr = 0.5 * _tanh_difference(0.5 * x, 0.5 * d)[0]  # sigmoid(x) = (1 + tanh(x/2)) / 2
  return dr, dr * (1.0 - 2.0 * jax.nn.sigmoid(x) - dr)  # rho' = s (1 - s)


# (rho(x + d) - rho(x), rho'(x + d) - rho'(x)) to full relative precision in d, for the exact
# mode's echo, which tracks its deviation d from the forward trajectory x (see integrator).
ACTIVATION_DIFFERENCES: dict[str, Callable] = {
    "tanh": _tanh_difference,
    "sigmoid": _sigmoid_difference,
    "identity": lambda x, d: (d, jnp.zeros_like(d)),
}


# Time steps per scan iteration when ModelConfig.unroll is None, per backend, from train-step times
# of bptt, rhel, rhel_centered and the forward phase at unroll 1, 4 and 16 (T=1000, N=64, batch 64).
# CPU (2 cores): unroll 1 is fastest for every method (larger bodies only add instructions to a
# loop whose iteration overhead is small next to the step). H200: 16 is fastest for bptt,
# rhel_centered and the forward phase and within 7 % of the best (4) for rhel; 1 is 1.6-2.5x slower.
# Other backends keep lax.scan's own default until measured.
DEFAULT_UNROLL = {"cpu": 1, "gpu": 16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static hyperparameters of the Hamiltonian (hashable, so usable as a jit static arg).

  Attributes:
    alpha: strength of the confining term ``alpha/2 |phi|^2``.
    beta: inverse coupling temperature; the recurrent term is ``rho^T W rho / (2 beta)``.
    dt: leapfrog step size h. Stability needs roughly ``h * omega_max < 2``.
    rho: activation name (``'tanh'``, ``'sigmoid'``, ``'identity'``) or an elementwise callable
      (its derivative is then taken with ``jax.jvp``).
    exact_reversible: run the RHEL phases on an integer grid (Levesque & Verlet 1993), so that
      the un-nudged echo retraces the forward phase bit for bit in any precision; the nudged
      echoes are carried as floating-point deviations from it. BPTT, tBPTT and e-prop always
      differentiate the floating-point map.
    grid_bits: grid resolution ``2**-grid_bits`` for phi and pi in exact mode. The state must
      stay below ``2**(30 - grid_bits)`` in magnitude (for ``dt > 2`` also ``dt/2 |pi|``); an
      overflow is reported, never wrapped.
      The nudges live in the floating-point deviations, so the grid puts no floor under eps.
    unroll: time steps per iteration of every ``lax.scan`` over time, in every method (forward,
      echo, BPTT, tBPTT, e-prop, exact mode, the layer), so that methods are compared at one
      setting. Results differ only in round-off. None: :data:`DEFAULT_UNROLL` for the backend
      (:meth:`scan_unroll`).
  """
  alpha: float = 1.0
  beta: float = 1.0
  dt: float = 0.2
  rho: Union[str, Callable] = "tanh"
  exact_reversible: bool = False
  grid_bits: int = 26
  unroll: Optional[int] = None

  def __post_init__(self):
    for name in ("alpha", "beta", "dt"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"ModelConfig.{name} must be a finite number, got {value!r}")
    if self.dt <= 0:
      raise ValueError(f"ModelConfig.dt must be > 0, got {self.dt!r}")
    if self.beta <= 0:
      raise ValueError(f"ModelConfig.beta must be > 0, got {self.beta!r}")
    if not isinstance(self.exact_reversible, bool):
      raise ValueError(f"ModelConfig.exact_reversible must be a bool, got {self.exact_reversible!r}")
    if isinstance(self.grid_bits, bool) or not isinstance(self.grid_bits, int) or not 4 <= self.grid_bits <= 26:
      raise ValueError(f"ModelConfig.grid_bits must be an int in [4, 26], got {self.grid_bits!r}")
    if self.unroll is not None and (isinstance(self.unroll, bool) or not isinstance(self.unroll, int)
                                    or self.unroll < 1):
      raise ValueError(f"ModelConfig.unroll must be None (per backend) or an int >= 1, got {self.unroll!r}")
    if isinstance(self.rho, str):
      if self.rho not in ACTIVATIONS:
        raise ValueError(f"ModelConfig.rho: unknown activation {self.rho!r}; "
                         f"choose one of {sorted(ACTIVATIONS)} or pass a callable")
    elif not callable(self.rho):
      raise ValueError(f"ModelConfig.rho must be a name or a callable, got {self.rho!r}")

  def scan_unroll(self) -> int:
    """``unroll``, or the default for the backend JAX runs on (:data:`DEFAULT_UNROLL`)."""
    if self.unroll is not None:
      return self.unroll
    return DEFAULT_UNROLL.get(jax.default_backend(), 1)

  def activation(self) -> tuple[Callable, Callable]:
    """Returns ``(rho, rho_prime)``, both elementwise."""
    if isinstance(self.rho, str):
      return ACTIVATIONS[self.rho]
    rho = self.rho
    return rho, lambda x: jax.jvp(rho, (x,), (jnp.ones_like(x),))[1]

  def activation_difference(self) -> Callable:
    """``fn(x, d) -> (rho(x + d) - rho(x), rho'(x + d) - rho'(x))``, elementwise.

    Closed forms for the named activations keep full relative precision as ``d -> 0``; a callable
    ``rho`` (or a name without an entry in ``ACTIVATION_DIFFERENCES``) falls back to subtracting
    two evaluations, which loses ``ulp(rho) / |d|``.
    """
    closed_form = ACTIVATION_DIFFERENCES.get(self.rho) if isinstance(self.rho, str) else None
    if closed_form is not None:
      return closed_form
    rho, rho_prime = self.activation()
    return lambda x, d: (rho(x + d) - rho(x), rho_prime(x + d) - rho_prime(x))


def spectral_weights(key: Array, n: int, *, alpha: float, beta: float, omega_min: float,
                     omega_max: float, dtype=jnp.float32) -> Array:
  """A symmetric ``W`` (N, N) whose linearised network oscillates at spread-out frequencies.

  Near ``phi = 0`` (``rho(0) = 0``, ``rho'(0) = 1``) the dynamics are ``phi'' = -(alpha I + W / beta) phi``,
  so each eigenvector of ``alpha I + W / beta`` is a mode of angular frequency sqrt(eigenvalue).
  Here the eigenvalues are ``omega**2`` with ``omega ~ U(omega_min, omega_max)`` per mode and the
  eigenvectors a Haar-random orthogonal basis: a spread of frequencies is what lets a linear
  oscillator bank hold *when* an input came (coRNN, LinOSS and LRU initialise the same way), where
  a Gaussian ``W`` puts every mode near ``sqrt(alpha)``.
  """
  if not 0 < omega_min <= omega_max:
    raise ValueError(f"spectral_weights: need 0 < omega_min <= omega_max, got {omega_min!r}, {omega_max!r}")
  k_q, k_omega = jax.random.split(key)
  q = jax.random.orthogonal(k_q, n, dtype=dtype)
  omega = jax.random.uniform(k_omega, (n,), dtype, omega_min, omega_max)
  w = beta * (q * (omega ** 2 - alpha)) @ q.T
  return (w + w.T) / 2


def init_params(key: Array, n_in: int, n_hidden: int, n_out: int, *,
                dtype=jnp.float32, w_scale: float = 1.0, in_scale: float = 1.0,
                b_scale: float = 0.1, out_scale: float = 1.0,
                spectrum: Optional[tuple[float, float, float, float]] = None) -> dict[str, Array]:
  """Random parameters as a plain dict.

  ``W ~ w_scale * N(0, 1/N)`` (stored symmetric), ``B ~ in_scale * N(0, 1/n_in)``,
  ``b ~ b_scale * N(0, 1)``, ``W_out ~ out_scale * N(0, 1/N)``, ``b_out = 0``.
  With ``spectrum=(alpha, beta, omega_min, omega_max)``, ``W`` comes from
  :func:`spectral_weights` instead (``w_scale`` is then unused).

  Returns:
    ``{'W': (N, N), 'b': (N,), 'B': (n_in, N), 'W_out': (n_out, N), 'b_out': (n_out,)}``.
  """
  for name, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"init_params: {name} must be a positive int, got {value!r}")
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"init_params: dtype must be a floating type, got {dtype}")
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("init_params: dtype float64 needs jax.config.update('jax_enable_x64', True) "
                     "before any array is created; without it JAX silently uses float32")
  k_w, k_b, k_in, k_out = jax.random.split(key, 4)
  n = n_hidden
  if spectrum is None:
    w = jax.random.normal(k_w, (n, n), dtype) * (w_scale / math.sqrt(n))
    w = (w + w.T) / 2
  else:
    alpha, beta, omega_min, omega_max = spectrum
    w = spectral_weights(k_w, n, alpha=alpha, beta=beta, omega_min=omega_min, omega_max=omega_max, dtype=dtype)
  return {
      "W": w,
      "b": jax.random.normal(k_b, (n,), dtype) * b_scale,
      "B": jax.random.normal(k_in, (n_in, n), dtype) * (in_scale / math.sqrt(n_in)),
      "W_out": jax.random.normal(k_out, (n_out, n), dtype) * (out_scale / math.sqrt(n)),
      "b_out": jnp.zeros((n_out,), dtype),
  }


def symmetric(w: Array) -> Array:
  """``(W + W^T) / 2``: the matrix the dynamics actually use."""
  return (w + w.T) / 2


def potential(params: Params, model: ModelConfig, phi: Array, u: Array) -> Array:
  """V(phi; u) per sequence. phi: (..., N), u: (..., n_in) -> (...)."""
  rho, _ = model.activation()
  r = rho(phi)
  ws = symmetric(params["W"])
  return (model.alpha / 2 * jnp.sum(phi * phi, -1)
          + jnp.sum(r * (r @ ws), -1) / (2 * model.beta)
          + r @ params["b"] + jnp.sum((u @ params["B"]) * r, -1))


def hamiltonian(params: Params, model: ModelConfig, phi: Array, pi: Array, u: Array) -> Array:
  """H = |pi|^2/2 + V(phi; u). Shapes as :func:`potential`."""
  return jnp.sum(pi * pi, -1) / 2 + potential(params, model, phi, u)


def recurrent_drive(params: Params, model: ModelConfig, r: Array, u: Array) -> Array:
  """``Ws rho / beta + b + B^T u``: what multiplies rho'(phi) in dV/dphi. (..., N)."""
  return r @ symmetric(params["W"]) / model.beta + params["b"] + u @ params["B"]


class Force(NamedTuple):
  """dV/dphi at a point and the pieces it is built from, each (..., N); the learning rules reuse
  the pieces (the Hebbian terms read ``r``, e-prop's traces ``rp`` and ``drive``)."""
  dv: Array     # dV/dphi = alpha phi + rho'(phi) * drive (the force is its negative)
  r: Array      # rho(phi)
  rp: Array     # rho'(phi)
  drive: Array  # Ws rho(phi) / beta + b + B^T u


def force(params: Params, model: ModelConfig, phi: Array, u: Array, *,
          coupling: Optional[Callable[[Array], Array]] = None) -> Force:
  """The model's force, in closed form: every integrator step and learning rule calls this one.

  Args:
    phi: (..., N), where the force is evaluated (the leapfrog's midpoint).
    u: (..., n_in), broadcastable against phi's leading dims.
    coupling: ``fn(rho(phi)) -> Ws rho(phi) / beta`` in place of the plain product: e-prop
      stop-gradients it; the exact mode's twin takes it from a matmul shared with its deviations.
  Returns:
    :class:`Force` ``(dv, r, rp, drive)``, each (..., N).
  """
  rho, rho_prime = model.activation()
  # The order of phi's uses sets the order in which autodiff sums their cotangents, i.e. BPTT's
  # round-off: rho, then the confining term, then rho'.
  r = rho(phi)
  confining = model.alpha * phi
  rp = rho_prime(phi)
  if coupling is None:
    drive = recurrent_drive(params, model, r, u)
  else:
    drive = coupling(r) + params["b"] + u @ params["B"]
  return Force(confining + rp * drive, r, rp, drive)


def force_difference(model: ModelConfig, at: Force, dphi: Array, drp: Array, ddrive: Array) -> Array:
  """``dV/dphi(phi + dphi) - dV/dphi(phi)`` without subtracting two O(1) numbers.

      alpha dphi + d(rho') (drive + d(drive)) + rho'(phi) d(drive)

  ``at`` is :func:`force` at ``phi``; ``drp = rho'(phi + dphi) - rho'(phi)`` and
  ``ddrive = Ws d(rho) / beta`` come from :meth:`ModelConfig.activation_difference`, so the result
  keeps full relative precision however small ``dphi`` is. Shapes: (..., N), broadcasting ``at``.
  """
  return model.alpha * dphi + drp * (at.drive + ddrive) + at.rp * ddrive


def grad_potential(params: Params, model: ModelConfig, phi: Array, u: Array) -> Array:
  """dV/dphi (the force is its negative), evaluated in closed form. (..., N)."""
  return force(params, model, phi, u).dv


def readout(params: Params, model: ModelConfig, phi: Array) -> Array:
  """y = W_out rho(phi) + b_out. (..., N) -> (..., n_out)."""
  rho, _ = model.activation()
  return rho(phi) @ params["W_out"].T + params["b_out"]

"""Exact-reversible mode: the leapfrog on an integer grid, and the echo that rides on it.

The forward phase and an un-nudged twin echo run on int32 grid values, so the echo retraces the
forward phase bit for bit; the nudged echoes are carried as floating-point deviations from the
twin (:func:`twin_step`), and the contrast *echo minus forward* is accumulated directly.
Chosen by ``ModelConfig(exact_reversible=True)``: :mod:`rhel_jax.integrator`'s phases take their
step (:func:`grid_leapfrog_step`) and their echo's carrier (:func:`grid_echo`) from here.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from rhel_jax.model import ModelConfig, Params, force, force_difference, symmetric
from rhel_jax.state import EchoCarrier, State

Array = jax.Array


# Integer-grid leapfrog (exact mode). State is int32 ``(Phi, Pi)`` with phi = Phi * 2**-grid_bits.
# Each increment is rounded with rint, which is odd (rint(-x) = -rint(x)), so flipping Pi undoes
# every addition exactly; the force depends on the (integer) midpoint alone, so it is recomputed
# bit for bit on the way back.
_GRID_LIMIT = 2 ** 30  # |Phi|, |Pi|, |kick| bound: every sum of two stays inside int32


def grid_scale(model: ModelConfig) -> float:
  return 2.0 ** -model.grid_bits


def to_grid(x: Array, model: ModelConfig) -> tuple[Array, Array]:
  """Float -> (int32 grid values, overflow flag)."""
  scaled = jnp.rint(x / grid_scale(model))
  return scaled.astype(jnp.int32), jnp.any(jnp.abs(scaled) >= _GRID_LIMIT)


def from_grid(x: Array, model: ModelConfig, dtype) -> Array:
  return x.astype(dtype) * grid_scale(model)


def grid_leapfrog_step(params: Params, model: ModelConfig, state: State, u: Array
                       ) -> tuple[State, Array, Array]:
  """:func:`leapfrog_step` on the integer grid: ``(new_state, rho(mid), overflow)``.

  Bit-reversible: from ``(Phi', -Pi')`` with the same ``u`` it returns exactly ``(Phi, -Pi)``.
  ``overflow`` (B, N) marks where the step left the int32-safe range (see :func:`twin_step`).
  """
  state, r, overflow, _, _ = twin_step(params, model, state, None, u)
  return state, r, overflow


def twin_step(params: Params, model: ModelConfig, twin: State, dev: Optional[State], u: Array):
  """One grid step of the twin and, riding on it, one floating-point step of its deviations.

  The twin (int32, (B, N)) takes :func:`grid_leapfrog_step`. Each deviated trajectory
  twin + ``dev[s]`` takes a leapfrog step whose force differs from the twin's by
  :func:`rhel_jax.model.force_difference`, with ``d(rho)``, ``d(rho')`` from
  :meth:`ModelConfig.activation_difference`, so every term keeps full relative precision however
  small the deviation is (no difference of two O(1) numbers); the twin's rounding is shared, so it
  cancels from the deviations. The twin's ``Ws rho`` must come out bit for bit as in the forward
  phase; see :func:`_share_twin_matmul` for when it shares the deviations' matmul.

  Args:
    twin: int32 grid state, each (B, N).
    dev: deviations ``(dphi, dpi)``, each (S, B, N) floating point, or None (twin only).
    u: (B, n_in).
  Returns:
    ``(new twin, rho(mid) (B, N), overflow (B, N), new dev or None, d(rho) at the midpoint
    (S, B, N) or None)``. ``overflow`` marks where a value left the int32-safe range (then the new
    twin is meaningless) or the force was NaN. It is elementwise so that a scan can OR it into its
    carry within the step's own fusion and reduce it once at the end.
  """
  h, dtype = model.dt, params["W"].dtype
  # Increments in grid units: (h/2) * Pi needs no rescaling, the kick is h * dV/dphi / scale.
  drift = lambda pi: jnp.rint((h / 2) * pi.astype(dtype)).astype(jnp.int32)
  mid = twin.phi + drift(twin.pi)
  mid_f = from_grid(mid, model, dtype)
  coupling = None
  if dev is not None:
    dmid = dev.phi + (h / 2) * dev.pi
    dr, drp = model.activation_difference()(mid_f, dmid)
    ws = symmetric(params["W"])
    if _share_twin_matmul():
      rho, _ = model.activation()
      coupled = jnp.concatenate([rho(mid_f)[None], dr], 0) @ ws / model.beta
      coupling, ddrive = (lambda _: coupled[0]), coupled[1:]
    else:
      ddrive = dr @ ws / model.beta
  at = force(params, model, mid_f, u, coupling=coupling)
  kick = jnp.rint((h / grid_scale(model)) * at.dv)
  # A kick clipped to the limit (NaN counts as past it) leaves |Pi - Pi'| at the limit, so it is
  # caught below with no float copy of the kick kept for the check.
  kick = jnp.clip(jnp.nan_to_num(kick, nan=_GRID_LIMIT), 1 - _GRID_LIMIT, _GRID_LIMIT - 1)
  pi = twin.pi - kick.astype(jnp.int32)
  phi = mid + drift(pi)
  # With |Phi|, |mid| < 2**30 and (h/2) |Pi| <= 2**30 every int32 sum is exact; the check reads
  # only values the step keeps anyway.
  pi_limit = int(_GRID_LIMIT / max(1.0, h / 2))
  overflow = ((jnp.abs(mid) >= _GRID_LIMIT) | (jnp.abs(phi) >= _GRID_LIMIT)
              | (jnp.abs(pi) >= pi_limit) | (jnp.abs(pi - twin.pi) >= _GRID_LIMIT - 1))
  if dev is None:
    return State(phi, pi), at.r, overflow, None, None
  dpi = dev.pi - h * force_difference(model, at, dmid, drp, ddrive)
  return State(phi, pi), at.r, overflow, State(dmid + (h / 2) * dpi, dpi), dr


def _share_twin_matmul() -> bool:
  """Whether the twin's ``Ws rho`` rides in the deviations' matmul (one call instead of two).

  XLA:CPU computes each row of a matmul the same way whatever the number of rows, so there the
  stacked product still matches the forward phase's ``(B, N) @ (N, N)`` bit for bit (asserted by
  the bit-exact echo tests in ``tests/test_exact.py``). GPU libraries choose kernels (tiling,
  split-K) by shape, so elsewhere the twin keeps a matmul of the forward phase's own shape.
  """
  return jax.default_backend() == "cpu"


def grid_echo(params: Params, model: ModelConfig) -> EchoCarrier:
  """How the exact-mode echo carries its S trajectories (see :class:`rhel_jax.state.EchoCarrier`).

  The carry is ``(twin, dev, overflow)``: the un-nudged twin on the integer grid (int32, (B, N)),
  which retraces the forward phase bit for bit, the S nudged echoes as floating-point deviations
  from it (each (S, B, N)), and the elementwise overflow flags (B, N). Each step's contrast is
  taken against the twin itself, i.e. against the forward phase.
  """
  dtype = params["W"].dtype
  rho, _ = model.activation()

  def init(final_state: State, n_echo: int):
    zeros = jnp.zeros((n_echo,) + final_state.phi.shape, dtype)
    return State(final_state.phi, -final_state.pi), State(zeros, zeros), jnp.zeros(final_state.phi.shape, bool)

  def positions(carry):
    twin, dev, _ = carry
    phi = from_grid(twin.phi, model, dtype)
    return phi + dev.phi, rho(phi)

  def advance(carry, impulse, u):
    twin, dev, overflow = carry
    twin, r, over, dev, dr = twin_step(params, model, twin, State(dev.phi, dev.pi - impulse), u)
    return (twin, dev, overflow | over), r, dr

  def finish(carry):
    twin, dev, overflow = carry
    state = State(from_grid(twin.phi, model, dtype) + dev.phi, from_grid(twin.pi, model, dtype) + dev.pi)
    return state, jnp.any(overflow)

  return EchoCarrier(init, positions, advance, finish)

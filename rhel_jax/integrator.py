"""Drift-kick-drift leapfrog and the two phases built from it (plain ``lax.scan``s).

The step is blackjax-style: a small pure function of ``(params, model, state, u)``, chosen once per
phase by :func:`make_step` (floating point, or the integer grid of :mod:`rhel_jax.exact`). The input
``u`` is held for the whole step. Phases work time-major on a leading batch axis,
``inputs (T, B, n_in)``, so the Hebbian sums over the batch (:mod:`rhel_jax.hebbian`) are single
matmuls; the state may carry extra leading axes (the centered estimator stacks its +eps and -eps
echoes).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax import exact as grid
from rhel_jax.hebbian import compensated_add, compensated_total, contrast_terms, hebbian_terms, zero_sums
from rhel_jax.model import ModelConfig, Params, readout, recurrent_drive, symmetric
from rhel_jax.exact import from_grid, grid_leapfrog_step
from rhel_jax.state import State, zero_state

Array = jax.Array


def leapfrog_step(params: Params, model: ModelConfig, state: State, u: Array) -> tuple[State, Array]:
  """One drift-kick-drift step with the input ``u`` held for the whole step.

      mid = phi + h/2 pi;  pi' = pi - h dV/dphi(mid; u);  phi' = mid + h/2 pi'

  Exactly reversible in exact arithmetic: stepping ``(phi', -pi')`` with the same ``u`` gives
  ``(phi, -pi)``. One ``W @ rho`` matmul per step.

  Args:
    state: ``(phi, pi)``, each ``(..., N)``.
    u: ``(..., n_in)`` broadcastable against the state's leading dims.
  Returns:
    ``(new_state, rho(mid))``; ``rho(mid)`` (..., N) is returned because the Hebbian
    accumulators need it and the force has already computed it.
  """
  h = model.dt
  rho, rho_prime = model.activation()
  mid = state.phi + (h / 2) * state.pi
  r = rho(mid)
  dv = model.alpha * mid + rho_prime(mid) * recurrent_drive(params, model, r, u)
  pi = state.pi - h * dv
  return State(mid + (h / 2) * pi, pi), r


class Step(NamedTuple):
  """What one step of a phase gives: the new state (float, or int32 on the grid), ``rho(mid)``,
  ``phi`` as floats (for the readout), and the grid's overflow flags (None in floating point)."""
  state: State
  r: Array
  phi: Array
  overflow: Optional[Array]


def make_step(model: ModelConfig, dtype, exact: bool) -> Callable[[Params, State, Array], Step]:
  """The forward step, chosen once: floating point, or the integer grid (``exact``)."""
  if exact:
    def grid_step(params, state, u):
      state, r, overflow = grid_leapfrog_step(params, model, state, u)
      return Step(state, r, from_grid(state.phi, model, dtype), overflow)
    return grid_step

  def float_step(params, state, u):
    state, r = leapfrog_step(params, model, state, u)
    return Step(state, r, state.phi, None)
  return float_step


class ForwardResult(NamedTuple):
  """The inference phase: final state, readouts ``ys (T, B, n_out)``, and the Hebbian sums
  ``{'W', 'b', 'B'}`` when accumulated (else None)."""
  final: State
  ys: Array
  sums: Optional[dict]


class EchoResult(NamedTuple):
  """The echo: final echo states (each (S, B, N)), Hebbian sums ``{'W', 'b', 'B'}`` and readout
  sums ``{'W_out', 'b_out'}`` (see :func:`echo_phase`)."""
  final: State
  sums: dict
  readout_sums: dict


def forward_phase(params: Params, model: ModelConfig, inputs_tm: Array, *,
                  accumulate_hebbian: bool = False, exact: Optional[bool] = None) -> ForwardResult:
  """The inference phase from ``phi = pi = 0``.

  Args:
    inputs_tm: (T, B, n_in), time-major.
    accumulate_hebbian: also return the inference-phase accumulators
      ``sum_k hebbian_terms(rho(mid_k), rho(mid_k), u_k)`` (the one-sided RHEL estimator).
    exact: run on the integer grid (default: ``model.exact_reversible``); the final state is then
      int32 grid values, and an overflow of the grid turns the readouts into NaN.
  Returns:
    :class:`ForwardResult` ``(final_state, ys (T, B, n_out), sums or None)``. ``ys[k]`` is the
    readout of the state after step k. The hidden trajectory is never stored.
  """
  exact = model.exact_reversible if exact is None else exact
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]
  dtype = params["W"].dtype
  step = make_step(model, dtype, exact)

  def _step(carry, u):
    state, sums, overflow = carry
    out = step(params, state, u)
    if out.overflow is not None:
      overflow = overflow | out.overflow
    if accumulate_hebbian:
      sums = compensated_add(sums, hebbian_terms(out.r, out.r, u))
    return (out.state, sums, overflow), readout(params, model, out.phi)

  sums0 = zero_sums(params) if accumulate_hebbian else None
  state0 = zero_state(batch, n, jnp.int32 if exact else dtype)
  overflow0 = jnp.zeros((batch, n), bool) if exact else jnp.array(False)
  (state, sums, overflow), ys = lax.scan(_step, (state0, sums0, overflow0), inputs_tm)
  sums = compensated_total(sums) if accumulate_hebbian else None
  if exact:
    ys = jnp.where(jnp.any(overflow), jnp.nan, ys)
  return ForwardResult(state, ys, sums)


def _readout_sums(out, dy, r_here):
  return {"W_out": out["W_out"] + dy.T @ r_here, "b_out": out["b_out"] + jnp.sum(dy, 0)}


def echo_phase(params: Params, model: ModelConfig, final_state: State, inputs_tm: Array,
               dl_dy_tm: Array, nudge: Array, weights: Array) -> EchoResult:
  """The echo: from the flipped final state, replay the inputs backwards, nudging the momentum.

  Runs ``S`` echoes at once (stacked on a leading axis), echo ``s`` with nudge strength
  ``nudge[s]``. Echo step ``j`` starts at a state that mirrors forward state ``T - j``: it first
  receives the impulse ``pi -= nudge * g_{T-j}`` with
  ``g = rho'(phi^e) * (dL/dy_{T-j} @ W_out)`` (the loss gradient, evaluated locally at the echo
  position), then takes a leapfrog step with ``u_{T-1-j}``. For ``j = 0`` this is the spec's
  ``pi^e_0 = -pi_T - eps g_T``; for ``j > 0`` the impulse after echo step ``j - 1``.

  Floating-point mode accumulates each echo's own Hebbian terms (``contrast_terms`` with
  ``base = None``). Exact mode (:func:`rhel_jax.exact.echo_scan`) also runs an un-nudged twin
  echo on the integer grid, which retraces the forward phase bit for bit, and carries the S
  nudged echoes as floating-point deviations from the twin (:func:`rhel_jax.exact.twin_step`);
  it then accumulates the contrast *echo minus forward* directly, to the relative precision of
  the deviations.

  Args:
    final_state: forward state ``(phi_T, pi_T)``, each (B, N) (int32 grid values in exact mode).
    inputs_tm: (T, B, n_in); read in reverse by the scan (no reversed copy).
    dl_dy_tm: (T, B, n_out), the loss gradient with respect to the readouts.
    nudge: (S,) nudge strength of each echo.
    weights: (S,) weight of each echo in the contrast (see :func:`contrast_terms`).
  Returns:
    :class:`EchoResult` ``(final echo states (S, B, N) each, hebbian sums, readout sums)``. The
    Hebbian sums are ``{'W': sym(sum d^T s), 'b': sum d, 'B': sum u^T d}`` over steps and batch,
    with ``sym(M) = (M + M^T) / 2``: per echo, its own terms in floating-point mode, the contrast
    with the forward phase in exact mode. The readout sums are
    ``{'W_out': sum_k dL/dy_k^T rbar_k, 'b_out': sum_k dL/dy_k}`` with ``rbar`` rho(phi) averaged
    over the S echoes (exact mode: rho of the twin, i.e. of the forward state itself).
  """
  n_echo = nudge.shape[0]
  rho, rho_prime = model.activation()
  scale = nudge[:, None, None]
  stack = lambda x: jnp.broadcast_to(x, (n_echo,) + x.shape)
  out0 = {"W_out": jnp.zeros_like(params["W_out"]), "b_out": jnp.zeros_like(params["b_out"])}

  def _float_step(carry, xs):
    state, sums, out = carry
    u, dy = xs
    impulse = scale * (rho_prime(state.phi) * (dy @ params["W_out"]))
    out = _readout_sums(out, dy, jnp.mean(rho(state.phi), 0))
    state, r_mid = leapfrog_step(params, model, State(state.phi, state.pi - impulse), u)
    return (state, compensated_add(sums, contrast_terms(None, r_mid, weights, u)), out), None

  if model.exact_reversible:
    state, sums, out, overflow = grid.echo_scan(params, model, final_state, inputs_tm, dl_dy_tm, nudge, weights,
                                                _readout_sums)
  else:
    state0 = State(stack(final_state.phi), -stack(final_state.pi))
    (state, sums, out), _ = lax.scan(_float_step, (state0, zero_sums(params), out0), (inputs_tm, dl_dy_tm),
                                     reverse=True)
    sums = compensated_total(sums)
  sums = {**sums, "W": symmetric(sums["W"])}
  if model.exact_reversible:
    sums = jax.tree.map(lambda x: jnp.where(jnp.any(overflow), jnp.nan, x), sums)
  return EchoResult(state, sums, out)

"""Drift-kick-drift leapfrog and the two phases built from it (plain ``lax.scan``s).

The step is blackjax-style: a small pure function of ``(params, model, state, u)``. The input
``u`` is held for the whole step. Phases work time-major on a leading batch axis,
``inputs (T, B, n_in)``, so the Hebbian sums over the batch are single matmuls; the state may
carry extra leading axes (the centered estimator stacks its +eps and -eps echoes).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax.model import ModelConfig, Params, readout, recurrent_drive

Array = jax.Array


class State(NamedTuple):
  """Phase-space state; ``phi`` and ``pi`` are ``(..., N)``."""
  phi: Array
  pi: Array


def zero_state(batch: int, n_hidden: int, dtype) -> State:
  z = jnp.zeros((batch, n_hidden), dtype)
  return State(z, z)


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


def hebbian_terms(r_left: Array, r_right: Array, u: Array) -> dict[str, Array]:
  """Batch sums of the bilinear Hebbian terms for W, b and B.

  With ``r_left = r_right = rho(mid)`` these are (up to the factor 1/(2 beta) on W) the
  parameter derivatives of V summed over the batch: ``dV/dW = rho rho^T / (2 beta)``,
  ``dV/db = rho``, ``dV/dB = u rho^T``. The centered echo passes the difference and the sum
  of its two echoes' rho instead (see ``gradients``).

  Shapes: r_left, r_right (B, N); u (B, n_in) -> {'W': (N, N), 'b': (N,), 'B': (n_in, N)}.
  """
  return {"W": r_left.T @ r_right, "b": jnp.sum(r_left, 0), "B": u.T @ r_left}


def forward_phase(params: Params, model: ModelConfig, inputs_tm: Array, *,
                  accumulate_hebbian: bool = False
                  ) -> tuple[State, Array, Optional[dict[str, Array]]]:
  """The inference phase from ``phi = pi = 0``.

  Args:
    inputs_tm: (T, B, n_in), time-major.
    accumulate_hebbian: also return the inference-phase accumulators
      ``sum_k hebbian_terms(rho(mid_k), rho(mid_k), u_k)`` (the one-sided RHEL estimator).
  Returns:
    ``(final_state, ys (T, B, n_out), sums or None)``. ``ys[k]`` is the readout of the state
    after step k. The hidden trajectory is never stored.
  """
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]

  def _step(carry, u):
    state, sums = carry
    state, r = leapfrog_step(params, model, state, u)
    if accumulate_hebbian:
      sums = jax.tree.map(jnp.add, sums, hebbian_terms(r, r, u))
    return (state, sums), readout(params, model, state.phi)

  sums0 = _zero_sums(params) if accumulate_hebbian else None
  (state, sums), ys = lax.scan(_step, (zero_state(batch, n, params["W"].dtype), sums0), inputs_tm)
  return state, ys, sums


def echo_phase(params: Params, model: ModelConfig, final_state: State, inputs_tm: Array,
               dl_dy_tm: Array, nudge: Array,
               accumulate: Callable[[Array, Array], dict[str, Array]]
               ) -> tuple[State, dict[str, Array], dict[str, Array]]:
  """The echo: from the flipped final state, replay the inputs backwards, nudging the momentum.

  Runs ``S`` echoes at once (stacked on a leading axis), echo ``s`` with nudge strength
  ``nudge[s]``. Echo step ``j`` starts at a state that mirrors forward state ``T - j``: it first
  receives the impulse ``pi -= nudge * g_{T-j}`` with
  ``g = rho'(phi^e) * (dL/dy_{T-j} @ W_out)`` (the loss gradient, evaluated locally at the echo
  position), then takes a leapfrog step with ``u_{T-1-j}``. For ``j = 0`` this is the spec's
  ``pi^e_0 = -pi_T - eps g_T``; for ``j > 0`` the impulse after echo step ``j - 1``.

  Args:
    final_state: forward state ``(phi_T, pi_T)``, each (B, N).
    inputs_tm: (T, B, n_in); read in reverse by the scan (no reversed copy).
    dl_dy_tm: (T, B, n_out), the loss gradient with respect to the readouts.
    nudge: (S,) nudge strength of each echo.
    accumulate: ``fn(rho_mid (S, B, N), u (B, n_in)) -> sums`` called at every kick.
  Returns:
    ``(final echo state, hebbian sums, readout sums)``; the readout sums are
    ``{'W_out': sum_k dL/dy_k^T rbar_k, 'b_out': sum_k dL/dy_k}`` where ``rbar`` is
    rho(phi^e) averaged over the S echoes.
  """
  n_echo = nudge.shape[0]
  rho, rho_prime = model.activation()
  scale = nudge[:, None, None]
  stack = lambda x: jnp.broadcast_to(x, (n_echo,) + x.shape)
  state0 = State(stack(final_state.phi), -stack(final_state.pi))
  out0 = {"W_out": jnp.zeros_like(params["W_out"]), "b_out": jnp.zeros_like(params["b_out"])}

  def _step(carry, xs):
    state, sums, out = carry
    u, dy = xs
    r_here = rho(state.phi)
    g = rho_prime(state.phi) * (dy @ params["W_out"])
    state = State(state.phi, state.pi - scale * g)
    out = {"W_out": out["W_out"] + dy.T @ jnp.mean(r_here, 0), "b_out": out["b_out"] + jnp.sum(dy, 0)}
    state, r_mid = leapfrog_step(params, model, state, u)
    sums = jax.tree.map(jnp.add, sums, accumulate(r_mid, u))
    return (state, sums, out), None

  sums0 = _zero_sums(params)
  (state, sums, out), _ = lax.scan(_step, (state0, sums0, out0), (inputs_tm, dl_dy_tm), reverse=True)
  return state, sums, out


def _zero_sums(params: Params) -> dict[str, Array]:
  return {k: jnp.zeros_like(params[k]) for k in ("W", "b", "B")}

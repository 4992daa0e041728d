"""The phase-space state that every integrator step carries, and how an echo carries its S copies."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class State(NamedTuple):
  """Phase-space state; ``phi`` and ``pi`` are ``(..., N)``."""
  phi: Array
  pi: Array


def zero_state(batch: int, n_hidden: int, dtype) -> State:
  """``phi = pi = 0``, each (batch, n_hidden)."""
  z = jnp.zeros((batch, n_hidden), dtype)
  return State(z, z)


class EchoCarrier(NamedTuple):
  """How the echo (:func:`rhel_jax.integrator.echo_phase`) carries its S trajectories: in floating
  point (``integrator.float_echo``) or riding on an integer-grid twin (``exact.grid_echo``).

  The echo's scan body is the same for both; only these four functions differ:

  * ``init(final_state, S) -> carry``: start from the flipped forward final state ``(phi_T, -pi_T)``.
  * ``positions(carry) -> (phi (S, B, N), rbar (B, N))``: where each echo is (its nudge is evaluated
    there), and the ``rho(phi)`` the readout gradient uses.
  * ``advance(carry, impulse (S, B, N), u (B, n_in)) -> (carry, base, dr)``: subtract the impulse from
    the momentum, then take one leapfrog step; ``rho(mid_s) = base + dr_s`` (``base`` (B, N) or None,
    ``dr`` (S, B, N)), the input of :func:`rhel_jax.hebbian.contrast`.
  * ``finish(carry) -> (State (S, B, N) each, overflow: bool array or None)``.
  """
  init: Callable[[State, int], Any]
  positions: Callable[[Any], tuple[Array, Array]]
  advance: Callable[[Any, Array, Array], tuple[Any, Any, Array]]
  finish: Callable[[Any], tuple[State, Any]]

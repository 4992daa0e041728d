"""The learning rule's accumulators: Hebbian terms, the contrast of echoes, compensated sums, and
the factor that turns the accumulated difference into dL/d(W, b, B).

These are the two accumulators per synapse of the paper's local rule; the dynamics that produce
``rho(mid)`` live in :mod:`rhel_jax.integrator` (and :mod:`rhel_jax.exact` on the integer grid).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from rhel_jax.model import ModelConfig, Params

Array = jax.Array
HAMILTONIAN_KEYS = ("W", "b", "B")


def hebbian_terms(r_left: Array, r_right: Array, u: Array) -> dict[str, Array]:
  """Batch sums of the bilinear Hebbian terms for W, b and B.

  With ``r_left = r_right = rho(mid)`` these are (up to the factor 1/(2 beta) on W) the
  parameter derivatives of V summed over the batch: ``dV/dW = rho rho^T / (2 beta)``,
  ``dV/db = rho``, ``dV/dB = u rho^T``. The centered echo passes the difference and the sum
  of its two echoes' rho instead (see :func:`contrast_terms`).

  Shapes: r_left, r_right (B, N); u (B, n_in) -> {'W': (N, N), 'b': (N,), 'B': (n_in, N)}.
  """
  return {"W": r_left.T @ r_right, "b": jnp.sum(r_left, 0), "B": u.T @ r_left}


def contrast(base: Optional[Array], dr: Array, weights: Array) -> tuple[Array, Array]:
  """The two factors of the weighted contrast of S echoes: ``(d, s)`` with ``d = sum_s weights_s dr_s``
  (B, N) and ``s = 2 base + sum_s dr_s`` (B, N) (``base = 0`` when None); see :func:`contrast_terms`.

  ``d`` is also the contrast of the input's coupling: ``d @ B^T`` is the input cotangent of the step.
  """
  d = jnp.tensordot(weights.astype(dr.dtype), dr, 1)
  total = jnp.sum(dr, 0)
  return d, (total if base is None else 2 * base + total)


def contrast_terms(base: Optional[Array], dr: Array, weights: Array, u: Array) -> dict[str, Array]:
  """Hebbian terms of the weighted contrast of S echoes, from their deviations ``dr`` from ``base``.

  With echo ``s`` at ``rho_s = base + dr_s`` (``base = 0`` when None), the terms are
  ``hebbian_terms(d, 2 base + sum_s dr_s, u)`` with ``d = sum_s weights_s dr_s``. For weights
  ``(1,)`` the symmetrised W term is ``rho_0 rho_0^T - base base^T``; for ``(1, -1)`` it is
  ``rho_0 rho_0^T - rho_1 rho_1^T`` (as ``sym((a - b)^T (a + b)) = a^T a - b^T b``).

  Shapes: base (B, N) or None; dr (S, B, N); weights (S,); u (B, n_in).
  """
  return hebbian_terms(*contrast(base, dr, weights), u)


class Accumulator(NamedTuple):
  """How a phase sums its per-step Hebbian terms: ``zero(params) -> sums``,
  ``add(sums, terms) -> sums`` and ``total(sums) -> {'W', 'b', 'B'}``."""
  zero: Callable
  add: Callable
  total: Callable


def zero_sums(params: Params) -> dict[str, tuple[Array, Array]]:
  """Empty compensated accumulators (total, compensation) for W, b and B."""
  return {k: (jnp.zeros_like(params[k]), jnp.zeros_like(params[k])) for k in HAMILTONIAN_KEYS}


# The one-sided estimator subtracts two sums of T*B terms of order one to recover a difference of
# order eps: plain float32 summation would lose it to round-off that grows with T. Kahan's
# compensated sum keeps the error at one ulp of the total for N^2 extra adds per step (the
# Hebbian matmul itself costs B*N^2).
def compensated_add(sums, terms):
  """Kahan-adds ``terms`` ({name: array}) into ``sums`` ({name: (total, compensation)})."""
  def add(pair, x):
    total, comp = pair
    y = x - comp
    t = total + y
    return t, (t - total) - y
  return {k: add(sums[k], terms[k]) for k in terms}


def compensated_total(sums) -> dict[str, Array]:
  return {k: total - comp for k, (total, comp) in sums.items()}


COMPENSATED = Accumulator(zero_sums, compensated_add, compensated_total)
PLAIN = Accumulator(lambda params: {k: jnp.zeros_like(params[k]) for k in HAMILTONIAN_KEYS},
                    lambda sums, terms: {k: sums[k] + terms[k] for k in terms}, dict)


def accumulator(compensated: bool) -> Accumulator:
  """Kahan-compensated sums (:data:`COMPENSATED`) or plain ones (:data:`PLAIN`)."""
  return COMPENSATED if compensated else PLAIN


def finish_hamiltonian_grads(sums: dict[str, Array], model: ModelConfig, scale) -> dict[str, Array]:
  """Turns Hebbian sums into dL/d(W, b, B): factor h * scale, and dV/dW = rho rho^T / (2 beta)."""
  factor = model.dt * scale
  return {"W": sums["W"] * (factor / (2 * model.beta)), "b": sums["b"] * factor, "B": sums["B"] * factor}

"""The learning rule's accumulators: Hebbian terms, the contrast of echoes, compensated sums, and
the factor that turns the accumulated difference into dL/d(W, b, B).

These are the two accumulators per synapse of the paper's local rule; the dynamics that produce
``rho(mid)`` live in :mod:`rhel_jax.integrator` (and :mod:`rhel_jax.exact` on the integer grid).
The phases accumulate the three terms packed in one array (:func:`packed_terms`), so that a step's
Hebbian update is one matmul and one elementwise add.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from rhel_jax.model import ModelConfig, Params

Array = jax.Array


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


def packed_terms(r_left: Array, r_right: Array, u: Array) -> Array:
  """:func:`hebbian_terms` as one matmul: ``[r_right | 1 | u]^T @ r_left``, (N + 1 + n_in, N).

  Rows ``[0, N)`` hold ``W^T``, row ``N`` holds ``b`` and the last ``n_in`` rows ``B``
  (:func:`unpack_terms`). One product and one array to accumulate in place of three: on a CPU
  each step's separate small matmuls, reductions and compensated adds cost more in per-kernel
  overhead than in arithmetic (``benchmarks/profile_step.py``).

  Shapes: r_left, r_right (B, N); u (B, n_in).
  """
  ones = jnp.ones(r_right.shape[:-1] + (1,), r_right.dtype)
  left = jnp.concatenate([r_right, ones, u.astype(r_right.dtype)], -1)
  return jnp.einsum("bi,bj->ij", left, r_left)


def unpack_terms(packed: Array) -> dict[str, Array]:
  """:func:`packed_terms`' layout (or a sum of them), (N + 1 + n_in, N) -> ``{'W', 'b', 'B'}``."""
  n = packed.shape[-1]
  return {"W": packed[:n].T, "b": packed[n], "B": packed[n + 1:]}


class Accumulator(NamedTuple):
  """How a phase sums its per-step Hebbian terms, packed as :func:`packed_terms` gives them:
  ``zero(params) -> sums``, ``add(sums, packed terms) -> sums`` and ``total(sums) -> {'W', 'b', 'B'}``."""
  zero: Callable
  add: Callable
  total: Callable


def _packed_shape(params: Params) -> tuple[int, int]:
  n_in, n = params["B"].shape
  return n + 1 + n_in, n


def zero_sums(params: Params) -> Array:
  """Empty compensated accumulator: ``[total, compensation]`` stacked, (2, N + 1 + n_in, N)."""
  return jnp.zeros((2,) + _packed_shape(params), params["W"].dtype)


# The one-sided estimator subtracts two sums of T*B terms of order one to recover a difference of
# order eps: plain float32 summation would lose it to round-off that grows with T. Kahan's
# compensated sum keeps the error at one ulp of the total for a few extra adds per element and
# step (the Hebbian matmul itself costs B*N^2). Total and compensation live in one array so that
# the update is one elementwise kernel with one output.
def kahan_add(total: Array, comp: Array, x: Array) -> tuple[Array, Array]:
  """One step of Kahan's sum: ``x`` added to ``(total, compensation)``; returns the new pair."""
  y = x - comp
  t = total + y
  return t, (t - total) - y


def compensated_add(sums: Array, terms: Array) -> Array:
  """Kahan-adds ``terms`` (any shape) into ``sums`` (``[total, compensation]`` stacked on axis 0)."""
  return jnp.stack(kahan_add(sums[0], sums[1], terms))


def compensated_total(sums: Array) -> Array:
  """The compensated sum held by :func:`compensated_add`'s accumulator."""
  return sums[0] - sums[1]


COMPENSATED = Accumulator(zero_sums, compensated_add, lambda sums: unpack_terms(compensated_total(sums)))
PLAIN = Accumulator(lambda params: jnp.zeros(_packed_shape(params), params["W"].dtype),
                    lambda sums, terms: sums + terms, unpack_terms)


def accumulator(compensated: bool) -> Accumulator:
  """Kahan-compensated sums (:data:`COMPENSATED`) or plain ones (:data:`PLAIN`)."""
  return COMPENSATED if compensated else PLAIN


def echo_compensated(model: ModelConfig, centered: bool) -> bool:
  """Whether a rule's echo needs compensated sums.

  The one-sided rule in floating point subtracts the forward phase's sum from the echo's, two
  totals of order T*B that differ by O(eps): both need Kahan's sum. The centered rule accumulates
  its contrast directly, terms of order eps whose plain float32 sum is as precise as BPTT's own
  accumulation of dL/dW (float32, Copy-Paste T=1000, N=64: plain and compensated differ by 5e-7
  of the gradient's norm, against 8e-4 from float64 BPTT), so it saves the compensation's
  per-step work. Exact mode keeps it: its error floors reach 1e-6.
  """
  return model.exact_reversible or not centered


def finish_hamiltonian_grads(sums: dict[str, Array], model: ModelConfig, scale) -> dict[str, Array]:
  """Turns Hebbian sums into dL/d(W, b, B): factor h * scale, and dV/dW = rho rho^T / (2 beta)."""
  factor = model.dt * scale
  return {"W": sums["W"] * (factor / (2 * model.beta)), "b": sums["b"] * factor, "B": sums["B"] * factor}

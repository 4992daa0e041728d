"""The Hamiltonian RNN as a layer whose VJP is the RHEL echo (pure function; see ``rhel_jax.nn``).

``hamiltonian_layer(params, model, inputs_tm, method=..., eps=...)`` maps inputs ``(T, B, n_in)``
to ``y_k = rho(mid_k)`` ``(T, B, N)``, the activations at the leapfrog's kick positions, from rest.
Under ``method='bptt'`` JAX differentiates the scan as usual (memory O(T N)). Under ``'rhel'`` and
``'rhel_centered'`` a ``jax.custom_vjp`` keeps only the final state (and, for the one-sided rule,
the ``(T, B, n_in)`` input projections the input cotangent needs), and the backward pass is the
echo: run the same leapfrog backwards from ``(phi_T, -pi_T)`` and, at echo step ``j`` (which
replays forward step ``k = T-1-j``, so its midpoint retraces ``mid_k``), add the impulse

    pi <- pi - h dV/dphi(mid; u_k) - eps * rho'(mid) * ct_k          (ct_k = dL/dy_k)

to the kick. The parameter gradients are the Hebbian contrast of ``dV/dtheta`` at the echo's and
the forward's midpoints, and since ``u_k`` enters ``V`` through ``u_k^T B rho(mid_k)`` the input
cotangent of step k is the same contrast of ``B rho(mid)`` at that step:

    one-sided  dL/dtheta ~= h/eps      [sum_echo dV/dtheta - sum_forward dV/dtheta]     bias O(eps)
    centered   dL/dtheta ~= h/(2 eps)  [sum_echo(+eps) dV/dtheta - sum_echo(-eps) ...]  bias O(eps^2)

A loss on ``y_0 = rho(mid_0)`` has no parameter gradient (``mid_0`` comes before any kick), and
the echo gives exactly that. As in :mod:`rhel_jax.gradients`, ``eps`` is per sequence: the
impulse uses ``eps * B * ct`` for a batch of B, so a batch-mean loss needs no retuning of eps.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax.gradients import default_eps
from rhel_jax.hebbian import finish_hamiltonian_grads, hebbian_terms
from rhel_jax.integrator import leapfrog_step
from rhel_jax.state import State
from rhel_jax.model import ModelConfig, recurrent_drive

Array = jax.Array
LAYER_METHODS = ("bptt", "rhel", "rhel_centered")


def _forward(params, model: ModelConfig, inputs_tm: Array, keep_terms: bool):
  """Outputs ``rho(mid_k)`` (T, B, N), the final state and, if ``keep_terms``, the forward phase's
  Hebbian sums and per-step input projections ``rho(mid_k) @ B^T`` (T, B, n_in)."""
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]
  dtype = params["W"].dtype
  zeros = {"W": jnp.zeros((n, n), dtype), "b": jnp.zeros((n,), dtype), "B": jnp.zeros_like(params["B"])}

  def step(carry, u):
    state, sums = carry
    state, r = leapfrog_step(params, model, state, u)
    if keep_terms:
      sums = jax.tree.map(jnp.add, sums, hebbian_terms(r, r, u))
      return (state, sums), (r, r @ params["B"].T)
    return (state, sums), (r, None)

  start = State(jnp.zeros((batch, n), dtype), jnp.zeros((batch, n), dtype))
  (final, sums), (ys, proj) = lax.scan(step, (start, zeros), inputs_tm)
  return ys, final, sums, proj


def _echo(params, model: ModelConfig, final: State, inputs_tm: Array, ct: Array, nudges: Array):
  """Echoes from ``(phi_T, -pi_T)``, one per entry of ``nudges`` (S,), each nudged by ``nudges[s] * ct``.

  Returns the per-echo Hebbian sums (with a leading S axis) and the per-step ``rho(mid) @ B^T``
  (T, S, B, n_in) in forward time order.
  """
  h = model.dt
  rho, rho_prime = model.activation()
  s = nudges.shape[0]
  n = params["W"].shape[0]
  dtype = params["W"].dtype
  scale = nudges[:, None, None]
  per_echo_terms = jax.vmap(hebbian_terms, in_axes=(0, 0, None))

  def step(carry, xs):
    state, sums = carry
    u, c = xs
    mid = state.phi + (h / 2) * state.pi
    r, rp = rho(mid), rho_prime(mid)
    pi = state.pi - h * (model.alpha * mid + rp * recurrent_drive(params, model, r, u)) - scale * (rp * c)
    sums = jax.tree.map(jnp.add, sums, per_echo_terms(r, r, u))
    return (State(mid + (h / 2) * pi, pi), sums), r @ params["B"].T

  start = State(jnp.broadcast_to(final.phi, (s, *final.phi.shape)), jnp.broadcast_to(-final.pi, (s, *final.pi.shape)))
  zeros = {"W": jnp.zeros((s, n, n), dtype), "b": jnp.zeros((s, n), dtype),
           "B": jnp.zeros((s, *params["B"].shape), dtype)}
  (_, sums), proj = lax.scan(step, (start, zeros), (inputs_tm[::-1], ct[::-1]))
  return sums, proj[::-1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _echo_layer(model, method, eps, params, inputs_tm):
  return _forward(params, model, inputs_tm, keep_terms=False)[0]


def _echo_layer_fwd(model, method, eps, params, inputs_tm):
  ys, final, sums, proj = _forward(params, model, inputs_tm, keep_terms=method == "rhel")
  return ys, (params, inputs_tm, final, sums, proj)


def _echo_layer_bwd(model, method, eps, residuals, ct):
  params, inputs_tm, final, fwd_sums, fwd_proj = residuals
  dtype = params["W"].dtype
  eps_n = jnp.asarray(eps * inputs_tm.shape[1], dtype)  # per sequence (module docstring)
  if method == "rhel":
    sums, proj = _echo(params, model, final, inputs_tm, ct, eps_n[None])
    diff = {k: sums[k][0] - fwd_sums[k] for k in sums}
    d_proj, scale = proj[:, 0] - fwd_proj, 1.0 / eps_n
  else:
    sums, proj = _echo(params, model, final, inputs_tm, ct, jnp.stack([eps_n, -eps_n]))
    diff = {k: v[0] - v[1] for k, v in sums.items()}
    d_proj, scale = proj[:, 0] - proj[:, 1], 1.0 / (2 * eps_n)
  return finish_hamiltonian_grads(diff, model, scale), d_proj * (model.dt * scale)


_echo_layer.defvjp(_echo_layer_fwd, _echo_layer_bwd)


def hamiltonian_layer(params, model: ModelConfig, inputs_tm: Array, *, method: str = "bptt",
                      eps: float | None = None) -> Array:
  """Activations ``rho(mid_k)`` of the Hamiltonian RNN driven by ``inputs_tm``, from rest.

  Args:
    params: ``{'W': (N, N), 'b': (N,), 'B': (n_in, N)}`` (the Hamiltonian's parameters).
    model: :class:`ModelConfig`; ``exact_reversible`` is not supported here.
    inputs_tm: (T, B, n_in), time-major.
    method: ``'bptt'`` (autodiff through the scan), ``'rhel'`` or ``'rhel_centered'`` (the echo is the VJP).
    eps: nudge per sequence for the RHEL methods; None: :func:`rhel_jax.default_eps`.
  Returns:
    (T, B, N). Under ``jax.grad`` the cotangent flows to ``params`` and to ``inputs_tm``.
  """
  if method not in LAYER_METHODS:
    raise ValueError(f"hamiltonian_layer: method must be one of {list(LAYER_METHODS)}, got {method!r}")
  if method == "bptt":
    return _forward(params, model, inputs_tm, keep_terms=False)[0]
  if eps is None:
    eps = default_eps(params["W"].dtype, model)
  return _echo_layer(model, method, float(eps), params, inputs_tm)

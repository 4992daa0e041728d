"""The Hamiltonian RNN as a layer whose VJP is the gradient method (pure functions; see ``rhel_jax.nn``).

``hamiltonian_layer(params, model, inputs_tm, method=..., **options)`` maps inputs ``(T, B, n_in)``
to the activations ``y_k = rho(phi_{k+1})`` ``(T, B, N)`` after each leapfrog step, from rest: the
same hidden state the library's readout reads, so a linear head on the layer is the model of
:func:`rhel_jax.gradient`. The methods are the registry's methods that have a VJP form
(:attr:`rhel_jax.Method.vjp`, listed by :func:`rhel_jax.methods.layer_methods`):

* ``bptt``: :func:`bptt_layer`, JAX differentiates the forward scan as usual (memory O(T N)).
* ``rhel``, ``rhel_centered``: :func:`rhel_layer`, :func:`rhel_centered_layer`, a
  ``jax.custom_vjp`` whose backward pass is the echo of :func:`rhel_jax.integrator.echo_phase`, with
  the layer's output cotangent ``ct_k = dL/dy_k`` as the nudge: the forward pass keeps only the
  final state (and, for the one-sided rule in floating point, the ``(T, B, n_in)`` input couplings
  its input cotangent needs), and the echo runs backwards from ``(phi_T, -pi_T)`` receiving the
  impulse ``eps * rho'(phi) * ct_k`` at the position that mirrors ``phi_{k+1}``.

The parameter gradients are the Hebbian contrast of ``dV/dtheta`` at the echo's and the forward's
midpoints, and since ``u_k`` enters ``V`` through ``u_k^T B rho(mid_k)`` the input cotangent of
step k is the same contrast of ``B rho(mid_k)``:

    one-sided  dL/dtheta ~= h/eps      [sum_echo dV/dtheta - sum_forward dV/dtheta]     bias O(eps)
    centered   dL/dtheta ~= h/(2 eps)  [sum_echo(+eps) dV/dtheta - sum_echo(-eps) ...]  bias O(eps^2)

With ``ModelConfig(exact_reversible=True)`` both phases run on the integer grid exactly as in
:func:`rhel_jax.gradient` (the echo's twin retraces the forward phase, so the one-sided rule keeps
no forward accumulators); ``bptt`` differentiates the floating-point map, as everywhere. As in
:mod:`rhel_jax.gradients`, ``eps`` is per sequence: the impulse uses ``eps * B * ct`` for a batch of
B, so a batch-mean loss needs no retuning of eps.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rhel_jax import methods
from rhel_jax.hebbian import echo_compensated, finish_hamiltonian_grads
from rhel_jax.integrator import echo_phase, forward_phase
from rhel_jax.model import ModelConfig

Array = jax.Array


def bptt_layer(params, model: ModelConfig, inputs_tm: Array) -> Array:
  """BPTT's VJP form: the floating-point forward scan, differentiated by JAX. (T, B, n_in) -> (T, B, N)."""
  return forward_phase(params, model, inputs_tm, exact=False, readout_ys=False).ys


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _echo_layer(model, centered, eps, params, inputs_tm):
  return forward_phase(params, model, inputs_tm, readout_ys=False).ys


def _keeps_forward_terms(model, centered) -> bool:
  # Only the one-sided rule in floating point contrasts with the forward phase's own sums; the
  # centered rule contrasts its two echoes, and exact mode contrasts with the grid twin.
  return not centered and not model.exact_reversible


def _echo_layer_fwd(model, centered, eps, params, inputs_tm):
  keep = _keeps_forward_terms(model, centered)
  fwd = forward_phase(params, model, inputs_tm, readout_ys=False, accumulate_hebbian=keep, input_terms=keep)
  return fwd.ys, (params, inputs_tm, fwd.final, fwd.sums, fwd.input_terms)


def _echo_layer_bwd(model, centered, eps, residuals, ct):
  params, inputs_tm, final, fwd_sums, fwd_terms = residuals
  dtype = params["W"].dtype
  eps_n = jnp.asarray(eps * inputs_tm.shape[1], dtype)  # per sequence (module docstring)
  if centered:
    nudge, weights, scale = jnp.stack([eps_n, -eps_n]), jnp.array([1.0, -1.0]), 1.0 / (2 * eps_n)
  else:
    nudge, weights, scale = eps_n[None], jnp.ones((1,)), 1.0 / eps_n
  echo = echo_phase(params, model, final, inputs_tm, ct, nudge, weights, readout_ys=False, input_cotangents=True,
                    compensated=echo_compensated(model, centered))
  sums, d_in = echo.sums, echo.input_cotangents
  if _keeps_forward_terms(model, centered):
    sums = jax.tree.map(jnp.subtract, sums, fwd_sums)
    d_in = d_in - fwd_terms
  return finish_hamiltonian_grads(sums, model, scale), d_in * (model.dt * scale)


_echo_layer.defvjp(_echo_layer_fwd, _echo_layer_bwd)


def _scan_only(kernel: str) -> None:
  # The fused kernels (rhel_jax.pallas_phases) carry the readout's nudge, not a layer's cotangent.
  if kernel != "scan":
    raise ValueError(f"kernel={kernel!r}: the layer (VJP) form of RHEL runs on lax.scan only; the fused Pallas "
                     "kernels serve rhel_jax.gradient's readout-trained model")


def rhel_layer(params, model: ModelConfig, inputs_tm: Array, *, eps: float, kernel: str = "scan") -> Array:
  """One-sided RHEL's VJP form (eps: a Python number, the nudge per sequence; kernel: 'scan' only).
  (T, B, n_in) -> (T, B, N)."""
  _scan_only(kernel)
  return _echo_layer(model, False, float(eps), params, inputs_tm)


def rhel_centered_layer(params, model: ModelConfig, inputs_tm: Array, *, eps: float, kernel: str = "scan") -> Array:
  """Centered RHEL's VJP form (two echoes, +eps and -eps; kernel: 'scan' only). (T, B, n_in) -> (T, B, N)."""
  _scan_only(kernel)
  return _echo_layer(model, True, float(eps), params, inputs_tm)


def hamiltonian_layer(params, model: ModelConfig, inputs_tm: Array, *, method: str = "bptt", **options) -> Array:
  """Activations ``rho(phi_{k+1})`` of the Hamiltonian RNN driven by ``inputs_tm``, from rest.

  Args:
    params: ``{'W': (N, N), 'b': (N,), 'B': (n_in, N)}`` (the Hamiltonian's parameters).
    model: :class:`ModelConfig` (``exact_reversible`` runs the RHEL phases on the integer grid).
    inputs_tm: (T, B, n_in), time-major.
    method: a registered method with a VJP form (:func:`rhel_jax.methods.layer_methods`: ``'bptt'``,
      ``'rhel'``, ``'rhel_centered'``).
    **options: the method's options (e.g. ``eps``; None or missing: the default, e.g.
      :func:`rhel_jax.default_eps`).
  Returns:
    (T, B, N). Under ``jax.grad`` the cotangent flows to ``params`` and to ``inputs_tm``.
  """
  available = methods.layer_methods()
  if method not in available:
    raise ValueError(f"hamiltonian_layer: method must be one of {list(available)}, got {method!r}")
  spec = methods.METHODS[method]
  return spec.vjp(params, model, inputs_tm, **spec.resolve_options(options, params["W"].dtype, model))

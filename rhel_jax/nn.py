"""Flax NNX layer: the Hamiltonian RNN as a drop-in recurrent layer, trained by BPTT or by RHEL.

    from flax import nnx
    from rhel_jax.nn import HamiltonianRNN

    layer = HamiltonianRNN(4, 64, method="rhel_centered", rngs=nnx.Rngs(0))
    y = layer(u)                    # (batch, T, 4) -> (batch, T, 64): rho(phi) after each step

The methods are the registry's methods that have a VJP form (:func:`rhel_jax.methods.layer_methods`).
Under ``jax.grad`` / ``nnx.grad`` with ``method='rhel'`` or ``'rhel_centered'`` the layer's
backward pass is the echo (:mod:`rhel_jax.layer`): the cotangent of its outputs is the nudge,
the forward pass keeps only the final state, and the VJP returns the gradients of ``W``, ``b``,
``B`` and of the inputs, so layers below (and an encoder) learn too; stacked layers chain
their echoes. ``method='bptt'`` is plain autodiff, the reference. ``exact_reversible=True`` runs the
RHEL phases on the integer grid, as :func:`rhel_jax.gradient` does: the layer with a linear head is
that function's model, with the same gradients.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from rhel_jax import methods
from rhel_jax.gradients import default_eps
from rhel_jax.layer import hamiltonian_layer
from rhel_jax.model import ModelConfig, init_params


class HamiltonianRNN(nnx.Module):
  """This paper's Hamiltonian RNN (``W`` used through its symmetric part) as an NNX layer.

  Args:
    in_features: input width ``n_in``.
    hidden_features: number of units ``N``.
    method: a method of :func:`rhel_jax.methods.layer_methods`: ``'bptt'``, ``'rhel'`` (one-sided,
      bias O(eps)) or ``'rhel_centered'`` (bias O(eps^2)).
    eps: RHEL nudge per sequence (ignored by methods without one); None: :func:`rhel_jax.default_eps`
      for ``param_dtype`` and the mode.
    alpha, beta, dt, rho, exact_reversible, grid_bits, unroll: the Hamiltonian, the leapfrog step,
      the integer grid of the RHEL phases and the time steps per scan iteration
      (:class:`rhel_jax.ModelConfig`).
    param_dtype: dtype of the parameters and of the computation.
    w_scale, in_scale, b_scale: init scales (:func:`rhel_jax.init_params`).
    spectrum: ``(omega_min, omega_max)`` to draw ``W`` with spread mode frequencies instead
      (:func:`rhel_jax.spectral_weights`).
    rngs: ``nnx.Rngs``; the ``params`` stream draws the init.

  Call: ``layer(u)`` with ``u`` (batch, T, in_features) returns (batch, T, hidden_features).
  """

  def __init__(self, in_features: int, hidden_features: int, *, method: str = "bptt",
               eps: Optional[float] = None, alpha: float = 1.0, beta: float = 1.0, dt: float = 0.5,
               rho: str = "tanh", exact_reversible: bool = False, grid_bits: int = 26,
               unroll: Optional[int] = None, param_dtype=jnp.float32,
               w_scale: float = 0.5, in_scale: float = 0.5, b_scale: float = 0.1,
               spectrum: Optional[tuple[float, float]] = None, rngs: nnx.Rngs):
    for name, value in (("in_features", in_features), ("hidden_features", hidden_features)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"HamiltonianRNN.{name} must be a positive int, got {value!r}")
    if method not in methods.layer_methods():
      raise ValueError(f"HamiltonianRNN.method must be one of {list(methods.layer_methods())}, got {method!r}")
    try:
      self.model = ModelConfig(alpha=alpha, beta=beta, dt=dt, rho=rho, exact_reversible=exact_reversible,
                               grid_bits=grid_bits, unroll=unroll)
    except ValueError as e:
      raise ValueError(f"HamiltonianRNN: {e}".replace("ModelConfig.", "")) from None
    if eps is None:
      eps = default_eps(param_dtype, self.model)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
      raise ValueError(f"HamiltonianRNN.eps must be a number > 0, got {eps!r}")
    self.in_features, self.hidden_features = in_features, hidden_features
    self.method, self.eps = method, float(eps)
    p = init_params(rngs.params(), in_features, hidden_features, 1, dtype=param_dtype, w_scale=w_scale,
                    in_scale=in_scale, b_scale=b_scale,
                    spectrum=None if spectrum is None else (alpha, beta, *spectrum))
    self.W, self.b, self.B = nnx.Param(p["W"]), nnx.Param(p["b"]), nnx.Param(p["B"])

  def __call__(self, u: jax.Array) -> jax.Array:
    if u.ndim != 3:
      raise ValueError(f"HamiltonianRNN: input must be (batch, T, in_features={self.in_features}), "
                       f"got shape {tuple(u.shape)}")
    if u.shape[-1] != self.in_features:
      raise ValueError(f"HamiltonianRNN.in_features={self.in_features} but the input has "
                       f"{u.shape[-1]} features (shape {tuple(u.shape)})")
    params = {"W": self.W[...], "b": self.b[...], "B": self.B[...]}
    u_tm = jnp.swapaxes(u.astype(params["W"].dtype), 0, 1)
    options = {"eps": self.eps} if "eps" in methods.METHODS[self.method].option_names else {}
    ys = hamiltonian_layer(params, self.model, u_tm, method=self.method, **options)
    return jnp.swapaxes(ys, 0, 1)

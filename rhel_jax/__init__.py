"""rhel_jax: Recurrent Hamiltonian Echo Learning in JAX.

Public API::

    params = rhel_jax.init_params(key, n_in=4, n_hidden=32, n_out=3)
    model = rhel_jax.ModelConfig(alpha=1.0, beta=1.0, dt=0.2)
    ys = rhel_jax.forward(params, model, inputs)                 # (batch, T, n_in) -> (batch, T, n_out)
    loss, grads = rhel_jax.gradient("rhel_centered", params, model, inputs, targets, mask, loss="mse")

A new gradient method is a function plus ``rhel_jax.register(rhel_jax.Method(name, fn, options))``
(see :mod:`rhel_jax.methods`); ``rhel_jax.METHODS[name].bind(model, loss, **options)`` is the
method as ``(params, inputs, targets, mask) -> (loss, grads)`` for a training loop.
"""
from rhel_jax.gradients import (DEFAULT_EPS, DEFAULT_EPS_EXACT, bptt, default_eps, eprop, forward, gradient, gradient_fn,
                                readout_only,
                                rhel, rhel_centered, tbptt)
from rhel_jax.hebbian import contrast_terms, hebbian_terms
from rhel_jax.integrator import (EchoResult, ForwardResult, echo_phase, forward_phase, forward_readouts, leapfrog,
                                 leapfrog_step, make_step)
from rhel_jax.state import State, zero_state
from rhel_jax.methods import METHODS, Method, Option, layer_methods, register, unregister
from rhel_jax.losses import LOSSES, bce, ce_last, ce_lse, ce_max, ce_mean, mse, pooled_logits
from rhel_jax.model import (ACTIVATIONS, PARAM_NAMES, Force, ModelConfig, force, grad_potential, hamiltonian,
                            init_params, potential, readout, spectral_weights, symmetric)

__version__ = "0.1.0"

"""Gradient methods behind one interface: ``bptt``, ``rhel``, ``rhel_centered``, ``eprop``, ``tbptt``,
``readout``, each registered in :mod:`rhel_jax.methods` with its options and contract.

Each method is ``fn(params, model, inputs_tm, targets, mask, loss_fn, **options)
-> (loss, grads)`` with ``inputs_tm`` time-major (T, B, n_in) and grads in the structure of
params. The public entry point is :func:`gradient`, which validates and jits.

Nudge convention (RHEL): ``eps`` is the nudge per sequence. Sequence b's echo receives the
impulse ``-eps * B * dL/dphi_b``, i.e. ``-eps * dl_b/dphi_b`` for a batch-mean loss
``L = mean_b l_b``, and the estimate is divided by ``eps * B``. This keeps the best eps
independent of batch size, and keeps the Hebbian difference (a sum over the batch) B times
further above float round-off than a nudge of ``eps * dL/dphi``.

With ``ModelConfig(exact_reversible=True)`` the two RHEL methods run the forward phase and an
un-nudged echo on the integer grid (the echo then retraces the forward phase bit for bit) and
carry the nudged echoes as floating-point deviations from it; ``bptt``, ``tbptt`` and ``eprop``
always differentiate the floating-point map, which the grid map approximates to its resolution.
"""
from __future__ import annotations

import functools
from typing import Union

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax import layer, methods, validation
from rhel_jax.hebbian import echo_compensated, finish_hamiltonian_grads
from rhel_jax.integrator import forward_phase, forward_readouts, leapfrog, leapfrog_step
from rhel_jax.pallas_phases import KERNELS, phase_functions
from rhel_jax.state import State, zero_state
from rhel_jax.losses import LossFn, resolve_loss
from rhel_jax.methods import METHODS, Method, Option, register
from rhel_jax.model import ModelConfig, Params, readout, symmetric

Array = jax.Array


def _loss_and_cotangent(loss_fn: LossFn, ys_tm: Array, targets, mask) -> tuple[Array, Array]:
  """Loss and dL/dys, both from the stored readouts; the cotangent comes back time-major."""
  loss, dl_dy = jax.value_and_grad(lambda y: loss_fn(jnp.swapaxes(y, 0, 1), targets, mask))(ys_tm)
  return loss, dl_dy


def bptt(params, model, inputs_tm, targets, mask, loss_fn):
  """Reference gradient: ``jax.value_and_grad`` through the forward ``lax.scan`` (memory O(T))."""
  def objective(p):
    ys = forward_phase(p, model, inputs_tm, exact=False).ys
    return loss_fn(jnp.swapaxes(ys, 0, 1), targets, mask)
  return jax.value_and_grad(objective)(params)


def rhel(params, model, inputs_tm, targets, mask, loss_fn, *, eps, kernel="scan"):
  """One-sided RHEL: the contrastive Hebbian rule of the seed paper.

  One accumulator per synapse in the inference phase, one in the echo (nudge +eps):
  ``dL/dtheta ~= h/eps_n * (sum_echo dV/dtheta - sum_forward dV/dtheta)``. Bias O(eps).
  In exact mode the echo accumulates that difference itself, against its bit-exact retrace of
  the forward phase, so the forward phase keeps no accumulator. ``kernel`` picks how the phases
  run (:func:`rhel_jax.pallas_phases.phase_functions`).
  """
  forward_phase, echo_phase = phase_functions(kernel)
  eps_n = eps * inputs_tm.shape[1]
  exact = model.exact_reversible
  final, ys, fwd_sums, _ = forward_phase(params, model, inputs_tm, accumulate_hebbian=not exact)
  loss, dl_dy = _loss_and_cotangent(loss_fn, ys, targets, mask)
  _, diff, out, _ = echo_phase(params, model, final, inputs_tm, dl_dy, jnp.stack([eps_n]), jnp.ones((1,)))
  if not exact:
    diff = jax.tree.map(jnp.subtract, diff, fwd_sums)
  return loss, {**finish_hamiltonian_grads(diff, model, 1.0 / eps_n), **out}


def rhel_centered(params, model, inputs_tm, targets, mask, loss_fn, *, eps, kernel="scan"):
  """Centered RHEL: two echoes (+eps, -eps) from the same final state. Bias O(eps^2).

  The per-step difference ``r+ r+^T - r- r-^T = sym((r+ - r-)^T (r+ + r-))`` is accumulated
  directly (one matmul per step, and no cancellation of two large sums, so plain sums do outside
  exact mode: :func:`rhel_jax.hebbian.echo_compensated`). The forward phase needs no accumulator.
  ``kernel`` as in :func:`rhel`.
  """
  forward_phase, echo_phase = phase_functions(kernel)
  eps_n = eps * inputs_tm.shape[1]
  final, ys, _, _ = forward_phase(params, model, inputs_tm)
  loss, dl_dy = _loss_and_cotangent(loss_fn, ys, targets, mask)
  _, sums, out, _ = echo_phase(params, model, final, inputs_tm, dl_dy, jnp.stack([eps_n, -eps_n]),
                               jnp.array([1.0, -1.0]), compensated=echo_compensated(model, centered=True))
  return loss, {**finish_hamiltonian_grads(sums, model, 1.0 / (2 * eps_n)), **out}


def tbptt(params, model, inputs_tm, targets, mask, loss_fn, *, k=2):
  """Truncated BPTT with a sliding window: each step's loss is back-propagated through exactly
  the last ``k`` steps (the state k steps back is a constant). ``k >= T`` is full BPTT.

  Two passes: the forward phase gives the readouts and dL/dy (which, for losses such as
  ``ce_mean``, is known only at the end); the second pass carries a window of the last k
  (state, input) pairs and, at each step, back-propagates dL/dy_t through the window.
  Cost per step: k + 1 leapfrog steps forward and k backward.
  """
  _, batch, n_in = inputs_tm.shape
  n = params["W"].shape[0]
  ys = forward_phase(params, model, inputs_tm, exact=False).ys
  loss, dl_dy = _loss_and_cotangent(loss_fn, ys, targets, mask)
  dtype = params["W"].dtype

  def _window_readout(p, start, us, valid):
    def _inner(s, xs):
      u, v = xs
      new, _ = leapfrog_step(p, model, s, u)
      return jax.tree.map(lambda a, b: jnp.where(v, a, b), new, s), None
    end, _ = lax.scan(_inner, start, (us, valid), unroll=model.scan_unroll())
    return readout(p, model, end.phi), end

  def _step(carry, xs):
    state, win_phi, win_pi, win_u, win_valid, grads = carry
    u, dy = xs
    # Window holds (state before step, input) for the last k steps; invalid slots (t < k) are
    # identity steps whose state is s_0, so the unroll then starts at s_0.
    push = lambda w, x: jnp.concatenate([w[1:], x[None]], 0)
    win_phi, win_pi = push(win_phi, state.phi), push(win_pi, state.pi)
    win_u, win_valid = push(win_u, u), push(win_valid, jnp.array(True))
    start = State(win_phi[0], win_pi[0])
    _, vjp_fn, new_state = jax.vjp(lambda p: _window_readout(p, start, win_u, win_valid),
                                   params, has_aux=True)
    grads = jax.tree.map(jnp.add, grads, vjp_fn(dy)[0])
    return (new_state, win_phi, win_pi, win_u, win_valid, grads), None

  s0 = zero_state(batch, n, dtype)
  carry0 = (s0, jnp.zeros((k, batch, n), dtype), jnp.zeros((k, batch, n), dtype),
            jnp.zeros((k, batch, n_in), dtype), jnp.zeros((k,), bool),
            jax.tree.map(jnp.zeros_like, dict(params)))
  carry, _ = lax.scan(_step, carry0, (inputs_tm, dl_dy), unroll=model.scan_unroll())
  return loss, carry[-1]


def eprop(params, model, inputs_tm, targets, mask, loss_fn, *, online=True):
  """e-prop (Bellec et al. 2020) for the Hamiltonian neuron, with exact online traces.

  Each neuron's local state is ``(phi_i, pi_i)``; every synapse carries a 2-vector eligibility
  trace propagated by the neuron's own 2x2 leapfrog Jacobian. All recurrent input
  ``Ws rho(phi)`` (the self-coupling ``W_ii`` included) is treated as non-local, i.e. as a
  constant drive; ``rho'(phi_i)``, which multiplies that drive, is local and is differentiated.
  The learning signal is the instantaneous ``dL/dphi_{k,i} = rho'(phi_{k,i}) (W_out^T dL/dy_k)_i``.
  This equals BPTT through a model with ``stop_gradient`` on the recurrent ``rho(phi)``.
  A lossless neuron has Jacobian determinant 1, so traces do not decay.

  The readouts and dL/dy come from a first forward pass (so any loss works); the second pass
  runs the traces. Memory: traces of (B, N, N) for W, independent of T.

  ``online=False`` computes the same gradient in reverse mode, as ``jax.grad`` of that
  stop-gradient model (:func:`_eprop_offline`): the forward-mode traces cost O(B N^2) memory traffic
  per step, which makes the online form memory-bound (about 4x BPTT's time at T=400, N=64, B=64 on
  one CPU core, ``benchmarks/eprop_forms.py``), while reverse mode costs about what BPTT does, with
  BPTT's O(T) memory. Use it to train the baseline quickly; the online form is the learning rule as
  an online learner (a neuromorphic chip) would run it.
  """
  if not online:
    return _eprop_offline(params, model, inputs_tm, targets, mask, loss_fn)
  _, batch, n_in = inputs_tm.shape
  n = params["W"].shape[0]
  h, alpha, beta = model.dt, model.alpha, model.beta
  rho, rho_prime = model.activation()
  rho_second = lambda x: jax.jvp(rho_prime, (x,), (jnp.ones_like(x),))[1]
  ys = forward_phase(params, model, inputs_tm, exact=False).ys
  loss, dl_dy = _loss_and_cotangent(loss_fn, ys, targets, mask)
  dtype = params["W"].dtype

  def _propagate(trace, a, df):
    # trace: (e_phi, e_pi) of d(phi_i, pi_i)/dtheta; a (broadcast on the neuron axis) is
    # d(dV/dphi_i)/dmid_i, df the direct parameter derivative of dV/dphi_i.
    e_phi, e_pi = trace
    dm = e_phi + (h / 2) * e_pi
    e_pi = e_pi - h * (a * dm + df)
    return (dm + (h / 2) * e_pi, e_pi)

  def _step(carry, xs):
    state, tr_w, tr_b, tr_in, grads = carry
    u, dy = xs
    state, mid, at = leapfrog(params, model, state, u)
    r, rp = at.r, at.rp
    a = alpha + rho_second(mid) * at.drive                     # (B, N)
    tr_w = _propagate(tr_w, a[:, :, None], rp[:, :, None] * r[:, None, :] / beta)  # [b, i, j]
    tr_b = _propagate(tr_b, a, rp)                                                  # [b, i]
    tr_in = _propagate(tr_in, a[:, None, :], u[:, :, None] * rp[:, None, :])      # [b, c, i]
    phi = state.phi
    signal = rho_prime(phi) * (dy @ params["W_out"])           # (B, N)
    grads = {
        "W": grads["W"] + jnp.einsum("bi,bij->ij", signal, tr_w[0]),
        "b": grads["b"] + jnp.sum(signal * tr_b[0], 0),
        "B": grads["B"] + jnp.einsum("bi,bci->ci", signal, tr_in[0]),
        "W_out": grads["W_out"] + dy.T @ rho(phi),
        "b_out": grads["b_out"] + jnp.sum(dy, 0),
    }
    return (state, tr_w, tr_b, tr_in, grads), None

  zeros = lambda *shape: (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
  carry0 = (zero_state(batch, n, dtype), zeros(batch, n, n), zeros(batch, n), zeros(batch, n_in, n),
            jax.tree.map(jnp.zeros_like, dict(params)))
  carry, _ = lax.scan(_step, carry0, (inputs_tm, dl_dy), unroll=model.scan_unroll())
  grads = carry[-1]
  # Traces are for the symmetric Ws_ij as a free matrix; the stored W enters as (W + W^T)/2.
  return loss, {**grads, "W": (grads["W"] + grads["W"].T) / 2}


def _eprop_offline(params, model, inputs_tm, targets, mask, loss_fn):
  """e-prop's gradient by reverse mode: BPTT with ``stop_gradient`` on the recurrent ``rho(mid)``.

  The forward values are the model's own; only the derivative through other neurons' (and the
  neuron's own) recurrent input is cut, which is what e-prop's traces leave out.
  """
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]

  def objective(p):
    coupling = lambda r: lax.stop_gradient(r) @ symmetric(p["W"]) / model.beta

    def _step(state, u):
      state, _, _ = leapfrog(p, model, state, u, coupling=coupling)
      return state, readout(p, model, state.phi)
    _, ys = lax.scan(_step, zero_state(batch, n, p["W"].dtype), inputs_tm, unroll=model.scan_unroll())
    return loss_fn(jnp.swapaxes(ys, 0, 1), targets, mask)

  return jax.value_and_grad(objective)(params)


def readout_only(params, model, inputs_tm, targets, mask, loss_fn):
  """Only the readout ``W_out``, ``b_out`` learns; ``W``, ``b``, ``B`` get zero gradient.

  The Hamiltonian network stays at its initialisation (an untrained reservoir), so this is the
  floor every method that trains the network must beat. Two forward passes: the first gives the
  readouts and dL/dy, the second accumulates ``sum_k dL/dy_k^T rho(phi_k)``; memory O(1) in T.
  """
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]
  rho, _ = model.activation()
  ys = forward_phase(params, model, inputs_tm, exact=False).ys
  loss, dl_dy = _loss_and_cotangent(loss_fn, ys, targets, mask)

  def _step(carry, xs):
    state, g_out = carry
    u, dy = xs
    state, _ = leapfrog_step(params, model, state, u)
    return (state, g_out + dy.T @ rho(state.phi)), None

  (_, g_out), _ = lax.scan(_step, (zero_state(batch, n, params["W"].dtype), jnp.zeros_like(params["W_out"])),
                           (inputs_tm, dl_dy), unroll=model.scan_unroll())
  grads = {k: jnp.zeros_like(params[k]) for k in ("W", "b", "B")}
  return loss, {**grads, "W_out": g_out, "b_out": jnp.sum(dl_dy, (0, 1))}


# Default nudge (per-sequence convention above), from `python -m benchmarks.fidelity`
# (docs/results.md#gradient-fidelity): per precision, the eps with the best worst-case cosine to
# float64 BPTT over Copy-Paste (BCE) and a ce_mean classification task, T = 100..4000, at init and
# trained. In plain float32 no eps is good for both tasks (Copy-Paste wants ~3e-5, the
# classification ~1e-2: the loss scale sets how far the nudge sits above round-off), and 3e-4 is
# the compromise; tune it per task, or use the exact mode, where 1e-5 is best for both.
DEFAULT_EPS = {"float64": 1e-5, "float32": 3e-4}
DEFAULT_EPS_EXACT = 1e-5


def default_eps(dtype, model: ModelConfig) -> float:
  """The nudge ``gradient`` uses when none is given, by parameter dtype and integrator mode."""
  if model.exact_reversible:
    return DEFAULT_EPS_EXACT
  return DEFAULT_EPS.get(jnp.dtype(dtype).name, DEFAULT_EPS["float32"])


EPS = Option("eps", None, "positive_float", doc="RHEL nudge per sequence (None: rhel_jax.default_eps)",
             default_fn=default_eps)
TBPTT_K = Option("k", 2, "positive_int", static=True, config_key="tbptt_k",
                 doc="truncated-BPTT window in steps")

# Registration order is the display order. bptt_rtol: the worst relative error per tensor on the
# contract test's float64 problems (T = 20, mse/bce/ce_mean) at the default eps 1e-5 is 7.6e-5 for
# the one-sided rule (its O(eps) bias) and 3.6e-10 for the centered one; the tolerances leave at least 10x.
register(Method("bptt", bptt, bptt_rtol=1e-10, summary="jax.grad through the forward scan", vjp=layer.bptt_layer))
KERNEL = Option("kernel", "scan", "choice", static=True, choices=KERNELS, legacy="scan",
                doc="RHEL phases: 'scan' (lax.scan, the reference), 'pallas' (one fused Pallas kernel per "
                    "phase; GPU) or 'pallas_interpret' (the same kernels interpreted; any backend, slow)")
register(Method("rhel", rhel, (EPS, KERNEL), bptt_rtol=1e-3, color="tab:blue",
                summary="one-sided RHEL (the paper's rule), bias O(eps)", vjp=layer.rhel_layer))
register(Method("rhel_centered", rhel_centered, (EPS, KERNEL), bptt_rtol=1e-8, color="tab:orange",
                summary="centered RHEL, two echoes (+eps, -eps), bias O(eps^2)", vjp=layer.rhel_centered_layer))
EPROP_ONLINE = Option("online", True, "bool", static=True, config_key="eprop_online", legacy=True,
                      doc="e-prop: forward-mode traces (True) or the same gradient in reverse mode (False, faster)")
register(Method("eprop", eprop, (EPROP_ONLINE,), color="tab:green",
                summary="e-prop with exact online eligibility traces (or their reverse-mode equal)"))
register(Method("tbptt", tbptt, (TBPTT_K,), color="tab:red", summary="truncated BPTT, sliding window of k steps"))
register(Method("readout", readout_only, bptt_rtol=1e-10, trained=("W_out", "b_out"), color="tab:gray",
                summary="only the readout learns (the untrained-network floor)"))


@functools.partial(jax.jit, static_argnames=("method", "model", "loss_fn", "static_options"))
def _gradient_jit(method, params, model, inputs, targets, mask, loss_fn, static_options=(), traced_options=None):
  bound = METHODS[method].bind(model, loss_fn, **dict(static_options), **(traced_options or {}))
  return bound(params, inputs, targets, mask)


def gradient(method: str, params: Params, model: ModelConfig, inputs: Array, targets: Array,
             mask: Array | None = None, *, loss: Union[str, LossFn] = "mse", **options):
  """Loss and gradient of the loss with respect to params, by the named method.

  Args:
    method: a name in :data:`rhel_jax.METHODS`: ``'bptt'``, ``'rhel'``, ``'rhel_centered'``,
      ``'eprop'``, ``'tbptt'``, ``'readout'``, or any registered with :func:`rhel_jax.register`.
    params: mapping with ``W (N, N)``, ``b (N,)``, ``B (n_in, N)``, ``W_out (n_out, N)``,
      ``b_out (n_out,)``.
    model: :class:`ModelConfig`.
    inputs: (batch, T, n_in).
    targets: (batch, T, n_out) for ``'mse'``/``'bce'``; integer class ids (batch,) for the
      classification losses ``'ce_mean'``, ``'ce_max'``, ``'ce_last'``, ``'ce_lse'``; anything the callable
      accepts otherwise.
    mask: (batch, T) or (T,) weights of the steps (for classification: the valid steps);
      None means all ones.
    loss: a name in :data:`rhel_jax.LOSSES` or ``fn(ys (batch, T, n_out), targets, mask)``
      returning a scalar that averages over the batch.
    **options: the method's :class:`Option` s, e.g. ``eps`` (rhel, rhel_centered; default
      :func:`default_eps`: 1e-5 in float64 and in exact mode, 3e-4 in float32) and ``k``
      (tbptt window, default 2).
  Returns:
    ``(loss, grads)`` with grads a dict shaped like params.
  Raises:
    ValueError naming the field for bad input, and for a non-finite loss or gradient when
    called outside a trace.
  """
  spec = methods.get(method)
  loss_fn = resolve_loss(loss)
  params = validation.check_params(params)
  validation.check_model(model)
  inputs, targets, mask = validation.check_data(params, inputs, targets, mask, loss)
  options = spec.resolve_options(options, params["W"].dtype, model)
  static = tuple((o.name, options[o.name]) for o in spec.options if o.static)
  traced = {o.name: options[o.name] for o in spec.options if not o.static}
  result = _gradient_jit(method, params, model, inputs, targets, mask, loss_fn, static, traced)
  validation.check_finite_result(result, method, model)
  return result


def gradient_fn(method: str, model: ModelConfig, *, loss: Union[str, LossFn] = "mse", dtype=jnp.float32,
                **options):
  """The named method as a jitted ``(params, inputs, targets, mask) -> (loss, grads)``.

  Names, options and the model are checked once here; the arrays are not checked on each call
  (use :func:`gradient` for that), so this is the form for training loops, ``.lower()`` and
  benchmarks. Options are compile-time constants. ``dtype`` (the parameters' dtype) selects
  the default eps. Shapes as in :func:`gradient`.
  """
  spec = methods.get(method)
  validation.check_model(model)
  return jax.jit(spec.bind(model, loss, **spec.resolve_options(options, dtype, model)))


_forward_jit = jax.jit(forward_readouts, static_argnames=("model",))


def forward(params: Params, model: ModelConfig, inputs: Array) -> Array:
  """Readout trajectory of the inference phase: inputs (batch, T, n_in) -> (batch, T, n_out)."""
  params = validation.check_params(params)
  validation.check_model(model)
  inputs = validation.check_inputs(params, inputs)
  return _forward_jit(params, model, inputs)

"""Drift-kick-drift leapfrog and the two phases built from it (plain ``lax.scan``s).

One step (:func:`leapfrog`, on :func:`rhel_jax.model.force`), one forward phase
(:func:`forward_phase`) and one echo (:func:`echo_phase`) serve every gradient method of the
registry and the layer (:mod:`rhel_jax.layer`); each phase runs in floating point or on the integer
grid of :mod:`rhel_jax.exact`. The input ``u`` is held for the whole step. Phases work time-major
on a leading batch axis, ``inputs (T, B, n_in)``, so the Hebbian sums over the batch
(:mod:`rhel_jax.hebbian`) are single matmuls; the echo's state carries an extra leading axis of S
echoes (the centered estimator runs its +eps and -eps echoes together).

The phase functions are the hooks for other backends of the same rule (a fused kernel must return
the same :class:`ForwardResult` / :class:`EchoResult`; their docstrings give every shape).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax import exact as grid
from rhel_jax.hebbian import accumulator, contrast, packed_terms
from rhel_jax.model import Force, ModelConfig, Params, force, readout, symmetric
from rhel_jax.state import EchoCarrier, State, zero_state

Array = jax.Array


def leapfrog(params: Params, model: ModelConfig, state: State, u: Array, *,
             coupling: Optional[Callable[[Array], Array]] = None) -> tuple[State, Array, Force]:
  """One drift-kick-drift step with the input ``u`` held for the whole step.

      mid = phi + h/2 pi;  pi' = pi - h dV/dphi(mid; u);  phi' = mid + h/2 pi'

  Exactly reversible in exact arithmetic: stepping ``(phi', -pi')`` with the same ``u`` gives
  ``(phi, -pi)``. One ``W @ rho`` matmul per step.

  Args:
    state: ``(phi, pi)``, each ``(..., N)``.
    u: ``(..., n_in)`` broadcastable against the state's leading dims.
    coupling: passed to :func:`rhel_jax.model.force` (e-prop's stop-gradient form).
  Returns:
    ``(new_state, mid, force at mid)``; mid (..., N).
  """
  h = model.dt
  mid = state.phi + (h / 2) * state.pi
  at = force(params, model, mid, u, coupling=coupling)
  pi = state.pi - h * at.dv
  return State(mid + (h / 2) * pi, pi), mid, at


def leapfrog_step(params: Params, model: ModelConfig, state: State, u: Array) -> tuple[State, Array]:
  """:func:`leapfrog` returning ``(new_state, rho(mid))``: the Hebbian accumulators need rho(mid),
  and the force has already computed it. Shapes as :func:`leapfrog`."""
  state, _, at = leapfrog(params, model, state, u)
  return state, at.r


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
      state, r, overflow = grid.grid_leapfrog_step(params, model, state, u)
      return Step(state, r, grid.from_grid(state.phi, model, dtype), overflow)
    return grid_step

  def float_step(params, state, u):
    state, r = leapfrog_step(params, model, state, u)
    return Step(state, r, state.phi, None)
  return float_step


class ForwardResult(NamedTuple):
  """The inference phase: final state, per-step outputs ``ys`` (T, B, n_out) (readouts) or
  (T, B, N) (``rho(phi)``), the Hebbian sums ``{'W', 'b', 'B'}`` when accumulated (else None), and
  the per-step input couplings ``rho(mid) @ B^T`` (T, B, n_in) when asked for (else None)."""
  final: State
  ys: Array
  sums: Optional[dict]
  input_terms: Optional[Array] = None


class EchoResult(NamedTuple):
  """The echo: final echo states (each (S, B, N)), Hebbian sums ``{'W', 'b', 'B'}``, readout sums
  ``{'W_out', 'b_out'}`` (None without a readout) and input cotangents (T, B, n_in) (None unless
  asked for); see :func:`echo_phase`."""
  final: State
  sums: dict
  readout_sums: Optional[dict]
  input_cotangents: Optional[Array] = None


def forward_phase(params: Params, model: ModelConfig, inputs_tm: Array, *,
                  accumulate_hebbian: bool = False, exact: Optional[bool] = None, readout_ys: bool = True,
                  input_terms: bool = False) -> ForwardResult:
  """The inference phase from ``phi = pi = 0``.

  Args:
    params: ``W (N, N)``, ``b (N,)``, ``B (n_in, N)`` and, with ``readout_ys``, ``W_out (n_out, N)``,
      ``b_out (n_out,)``.
    inputs_tm: (T, B, n_in), time-major.
    accumulate_hebbian: also return the inference-phase accumulators
      ``sum_k hebbian_terms(rho(mid_k), rho(mid_k), u_k)`` (compensated sums, W symmetrised; the
      one-sided RHEL estimator in floating point).
    exact: run on the integer grid (default: ``model.exact_reversible``); the final state is then
      int32 grid values, and an overflow of the grid turns the outputs into NaN.
    readout_ys: ``ys[k]`` is the readout ``W_out rho(phi_{k+1}) + b_out`` (T, B, n_out); else the
      activation ``rho(phi_{k+1})`` itself (T, B, N), the layer's output.
    input_terms: also return ``rho(mid_k) @ B^T`` (T, B, n_in), the one-sided layer's share of the
      input cotangent.
  Returns:
    :class:`ForwardResult` ``(final_state, ys, sums or None, input_terms or None)``. ``ys[k]`` is
    read from the state after step k. The hidden trajectory is never stored.
  """
  exact = model.exact_reversible if exact is None else exact
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]
  dtype = params["W"].dtype
  step = make_step(model, dtype, exact)
  acc = accumulator(True)
  rho, _ = model.activation()

  def _step(carry, u):
    state, sums, overflow = carry
    out = step(params, state, u)
    if out.overflow is not None:
      overflow = overflow | out.overflow
    if accumulate_hebbian:
      sums = acc.add(sums, packed_terms(out.r, out.r, u))
    y = readout(params, model, out.phi) if readout_ys else rho(out.phi)
    return (out.state, sums, overflow), (y, out.r @ params["B"].T if input_terms else None)

  sums0 = acc.zero(params) if accumulate_hebbian else None
  state0 = zero_state(batch, n, jnp.int32 if exact else dtype)
  overflow0 = jnp.zeros((batch, n), bool) if exact else jnp.array(False)
  (state, sums, overflow), (ys, terms) = lax.scan(_step, (state0, sums0, overflow0), inputs_tm,
                                                  unroll=model.scan_unroll())
  sums = acc.total(sums) if accumulate_hebbian else None
  if accumulate_hebbian:
    # Symmetric in exact arithmetic; symmetrised once, like the echo's, so that the one-sided
    # rule's difference of the two is exactly symmetric.
    sums = {**sums, "W": symmetric(sums["W"])}
  if exact:
    ys = jnp.where(jnp.any(overflow), jnp.nan, ys)
  return ForwardResult(state, ys, sums, terms)


def forward_readouts(params: Params, model: ModelConfig, inputs: Array) -> Array:
  """The readouts of the inference phase, batch-major: inputs (B, T, n_in) -> (B, T, n_out).

  Unchecked and traceable (for use inside jit / vmap); :func:`rhel_jax.forward` is the checked form.
  """
  ys = forward_phase(params, model, jnp.swapaxes(inputs, 0, 1)).ys
  return jnp.swapaxes(ys, 0, 1)


def float_echo(params: Params, model: ModelConfig) -> EchoCarrier:
  """How the floating-point echo carries its S trajectories: a :class:`State` (S, B, N) each,
  stepped by :func:`leapfrog_step`; each step's contrast is taken between the echoes themselves
  (``base = None``)."""
  rho, _ = model.activation()

  def init(final_state, n_echo):
    stack = lambda x: jnp.broadcast_to(x, (n_echo,) + x.shape)
    return State(stack(final_state.phi), -stack(final_state.pi))

  def advance(state, impulse, u):
    state, r_mid = leapfrog_step(params, model, State(state.phi, state.pi - impulse), u)
    return state, None, r_mid

  return EchoCarrier(init, lambda state: (state.phi, jnp.mean(rho(state.phi), 0)), advance,
                     lambda state: (state, None))


def echo_phase(params: Params, model: ModelConfig, final_state: State, inputs_tm: Array,
               cotangents_tm: Array, nudge: Array, weights: Array, *, exact: Optional[bool] = None,
               readout_ys: bool = True, input_cotangents: bool = False, compensated: bool = True) -> EchoResult:
  """The echo: from the flipped final state, replay the inputs backwards, nudging the momentum.

  Runs ``S`` echoes at once (stacked on a leading axis), echo ``s`` with nudge strength
  ``nudge[s]``. Echo step ``j`` starts at a state that mirrors forward state ``T - j``: it first
  receives the impulse ``pi -= nudge * g_{T-j}`` with ``g = rho'(phi^e) * c_{T-j}`` (the loss
  gradient with respect to phi, evaluated locally at the echo position), then takes a leapfrog step
  with ``u_{T-1-j}``. For ``j = 0`` this is the spec's ``pi^e_0 = -pi_T - eps g_T``; for ``j > 0``
  the impulse after echo step ``j - 1``. ``c_k`` is the cotangent of ``rho(phi_{k+1})``:
  ``dL/dy_k @ W_out`` for the readout (``readout_ys``), else the given cotangent itself.

  Floating-point mode (:func:`float_echo`) accumulates each echo's own Hebbian terms (``base =
  None``). Exact mode (:func:`rhel_jax.exact.grid_echo`) also runs an un-nudged twin echo on the
  integer grid, which retraces the forward phase bit for bit, and carries the S nudged echoes as
  floating-point deviations from the twin (:func:`rhel_jax.exact.twin_step`); it then accumulates
  the contrast *echo minus forward* directly, to the relative precision of the deviations.

  Args:
    final_state: forward state ``(phi_T, pi_T)``, each (B, N) (int32 grid values in exact mode).
    inputs_tm: (T, B, n_in); read in reverse by the scan (no reversed copy).
    cotangents_tm: with ``readout_ys``, (T, B, n_out), the loss gradient with respect to the
      readouts; else (T, B, N), the gradient with respect to ``rho(phi_{k+1})`` (the layer's outputs).
    nudge: (S,) nudge strength of each echo.
    weights: (S,) weight of each echo in the contrast (see :func:`rhel_jax.hebbian.contrast_terms`).
    exact: run on the integer grid (default: ``model.exact_reversible``); ``final_state`` must come
      from a forward phase in the same mode.
    readout_ys: whether the cotangents are of the readout (see above); also sets whether the readout
      sums are accumulated.
    input_cotangents: also return the per-step input cotangents ``d_k @ B^T`` (T, B, n_in) with
      ``d_k = sum_s weights_s rho(mid_k^s)`` in floating point and ``sum_s weights_s (rho(mid_k^s)
      - rho(mid_k))`` in exact mode (the contrast with the forward phase), unscaled like the sums.
    compensated: Kahan-compensated Hebbian sums (:mod:`rhel_jax.hebbian`); plain sums otherwise.
  Returns:
    :class:`EchoResult` ``(final echo states (S, B, N) each, hebbian sums, readout sums or None,
    input cotangents or None)``. The Hebbian sums are ``{'W': sym(sum d^T s), 'b': sum d, 'B': sum
    u^T d}`` over steps and batch, with ``sym(M) = (M + M^T) / 2``: per echo, its own terms in
    floating-point mode, the contrast with the forward phase in exact mode. The readout sums are
    ``{'W_out': sum_k dL/dy_k^T rbar_k, 'b_out': sum_k dL/dy_k}`` with ``rbar`` rho(phi) averaged
    over the S echoes (exact mode: rho of the twin, i.e. of the forward state itself). A grid
    overflow turns the Hebbian sums and the input cotangents into NaN.
  """
  exact = model.exact_reversible if exact is None else exact
  n_echo = nudge.shape[0]
  _, rho_prime = model.activation()
  scale = nudge[:, None, None]
  carrier = grid.grid_echo(params, model) if exact else float_echo(params, model)
  acc = accumulator(compensated)
  out0 = ({"W_out": jnp.zeros_like(params["W_out"]), "b_out": jnp.zeros_like(params["b_out"])}
          if readout_ys else None)

  def _step(carry, xs):
    echoes, sums, out = carry
    u, c = xs
    phi, rbar = carrier.positions(echoes)
    impulse = scale * (rho_prime(phi) * (c @ params["W_out"] if readout_ys else c))
    if readout_ys:
      out = {"W_out": out["W_out"] + c.T @ rbar, "b_out": out["b_out"] + jnp.sum(c, 0)}
    echoes, base, dr = carrier.advance(echoes, impulse, u)
    d, s = contrast(base, dr, weights)
    sums = acc.add(sums, packed_terms(d, s, u))
    return (echoes, sums, out), (d @ params["B"].T if input_cotangents else None)

  (echoes, sums, out), d_in = lax.scan(_step, (carrier.init(final_state, n_echo), acc.zero(params), out0),
                                       (inputs_tm, cotangents_tm), reverse=True, unroll=model.scan_unroll())
  state, overflow = carrier.finish(echoes)
  sums = acc.total(sums)
  sums = {**sums, "W": symmetric(sums["W"])}
  if overflow is not None:
    nan_if = lambda x: jnp.where(overflow, jnp.nan, x)
    sums = jax.tree.map(nan_if, sums)
    d_in = None if d_in is None else nan_if(d_in)
  return EchoResult(state, sums, out, d_in)

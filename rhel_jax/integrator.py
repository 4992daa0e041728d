"""Drift-kick-drift leapfrog and the two phases built from it (plain ``lax.scan``s).

The step is blackjax-style: a small pure function of ``(params, model, state, u)``. The input
``u`` is held for the whole step. Phases work time-major on a leading batch axis,
``inputs (T, B, n_in)``, so the Hebbian sums over the batch are single matmuls; the state may
carry extra leading axes (the centered estimator stacks its +eps and -eps echoes).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from rhel_jax.model import ModelConfig, Params, readout, recurrent_drive, symmetric

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


# Integer-grid leapfrog (exact mode). State is int32 ``(Phi, Pi)`` with phi = Phi * 2**-grid_bits.
# Each increment is rounded with rint, which is odd (rint(-x) = -rint(x)), so flipping Pi undoes
# every addition exactly; the force depends on the (integer) midpoint alone, so it is recomputed
# bit for bit on the way back.
_GRID_LIMIT = 2 ** 30  # |Phi|, |Pi|, |kick| bound: every sum of two stays inside int32


def grid_scale(model: ModelConfig) -> float:
  return 2.0 ** -model.grid_bits


def to_grid(x: Array, model: ModelConfig) -> tuple[Array, Array]:
  """Float -> (int32 grid values, overflow flag)."""
  scaled = jnp.rint(x / grid_scale(model))
  return scaled.astype(jnp.int32), jnp.any(jnp.abs(scaled) >= _GRID_LIMIT)


def from_grid(x: Array, model: ModelConfig, dtype) -> Array:
  return x.astype(dtype) * grid_scale(model)


def grid_leapfrog_step(params: Params, model: ModelConfig, state: State, u: Array
                       ) -> tuple[State, Array, Array]:
  """:func:`leapfrog_step` on the integer grid: ``(new_state, rho(mid), overflow)``.

  Bit-reversible: from ``(Phi', -Pi')`` with the same ``u`` it returns exactly ``(Phi, -Pi)``.
  ``overflow`` (B, N) marks where the step left the int32-safe range (see :func:`twin_step`).
  """
  state, r, overflow, _, _ = twin_step(params, model, state, None, u)
  return state, r, overflow


def twin_step(params: Params, model: ModelConfig, twin: State, dev: Optional[State], u: Array):
  """One grid step of the twin and, riding on it, one floating-point step of its deviations.

  The twin (int32, (B, N)) takes :func:`grid_leapfrog_step`. Each deviated trajectory
  twin + ``dev[s]`` takes a leapfrog step whose force differs from the twin's by

      dV'(mid + dm) - dV'(mid) = alpha dm + d(rho') (drive + d(drive)) + rho'(mid) d(drive),
      d(drive) = Ws d(rho) / beta,

  with ``d(rho)``, ``d(rho')`` from :meth:`ModelConfig.activation_difference`, so every term keeps
  full relative precision however small the deviation is (no difference of two O(1) numbers);
  the twin's rounding is shared, so it cancels from the deviations. The twin's ``Ws rho`` must
  come out bit for bit as in the forward phase; see :func:`_share_twin_matmul` for when it shares
  the deviations' matmul.

  Args:
    twin: int32 grid state, each (B, N).
    dev: deviations ``(dphi, dpi)``, each (S, B, N) floating point, or None (twin only).
    u: (B, n_in).
  Returns:
    ``(new twin, rho(mid) (B, N), overflow (B, N), new dev or None, d(rho) at the midpoint
    (S, B, N) or None)``. ``overflow`` marks where a value left the int32-safe range (then the new
    twin is meaningless) or the force was NaN. It is elementwise so that a scan can OR it into its
    carry within the step's own fusion and reduce it once at the end.
  """
  h, dtype = model.dt, params["W"].dtype
  rho, rho_prime = model.activation()
  # Increments in grid units: (h/2) * Pi needs no rescaling, the kick is h * dV/dphi / scale.
  drift = lambda pi: jnp.rint((h / 2) * pi.astype(dtype)).astype(jnp.int32)
  mid = twin.phi + drift(twin.pi)
  mid_f = from_grid(mid, model, dtype)
  r, rp = rho(mid_f), rho_prime(mid_f)
  if dev is not None:
    dmid = dev.phi + (h / 2) * dev.pi
    dr, drp = model.activation_difference()(mid_f, dmid)
  if dev is not None and _share_twin_matmul():
    coupled = jnp.concatenate([r[None], dr], 0) @ symmetric(params["W"]) / model.beta
    drive, ddrive = coupled[0] + params["b"] + u @ params["B"], coupled[1:]
  else:
    drive = recurrent_drive(params, model, r, u)
    ddrive = None if dev is None else dr @ symmetric(params["W"]) / model.beta
  kick = jnp.rint((h / grid_scale(model)) * (model.alpha * mid_f + rp * drive))
  # A kick clipped to the limit (NaN counts as past it) leaves |Pi - Pi'| at the limit, so it is
  # caught below with no float copy of the kick kept for the check.
  kick = jnp.clip(jnp.nan_to_num(kick, nan=_GRID_LIMIT), 1 - _GRID_LIMIT, _GRID_LIMIT - 1)
  pi = twin.pi - kick.astype(jnp.int32)
  phi = mid + drift(pi)
  # With |Phi|, |mid| < 2**30 and (h/2) |Pi| <= 2**30 every int32 sum is exact; the check reads
  # only values the step keeps anyway.
  pi_limit = int(_GRID_LIMIT / max(1.0, h / 2))
  overflow = ((jnp.abs(mid) >= _GRID_LIMIT) | (jnp.abs(phi) >= _GRID_LIMIT)
              | (jnp.abs(pi) >= pi_limit) | (jnp.abs(pi - twin.pi) >= _GRID_LIMIT - 1))
  if dev is None:
    return State(phi, pi), r, overflow, None, None
  dpi = dev.pi - h * (model.alpha * dmid + drp * (drive + ddrive) + rp * ddrive)
  return State(phi, pi), r, overflow, State(dmid + (h / 2) * dpi, dpi), dr


def _share_twin_matmul() -> bool:
  """Whether the twin's ``Ws rho`` rides in the deviations' matmul (one call instead of two).

  XLA:CPU computes each row of a matmul the same way whatever the number of rows, so there the
  stacked product still matches the forward phase's ``(B, N) @ (N, N)`` bit for bit (asserted by
  the bit-exact echo tests in ``tests/test_exact.py``). GPU libraries choose kernels (tiling,
  split-K) by shape, so elsewhere the twin keeps a matmul of the forward phase's own shape.
  """
  return jax.default_backend() == "cpu"


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
                  accumulate_hebbian: bool = False, exact: Optional[bool] = None
                  ) -> tuple[State, Array, Optional[dict[str, Array]]]:
  """The inference phase from ``phi = pi = 0``.

  Args:
    inputs_tm: (T, B, n_in), time-major.
    accumulate_hebbian: also return the inference-phase accumulators
      ``sum_k hebbian_terms(rho(mid_k), rho(mid_k), u_k)`` (the one-sided RHEL estimator).
    exact: run on the integer grid (default: ``model.exact_reversible``); the final state is then
      int32 grid values, and an overflow of the grid turns the readouts into NaN.
  Returns:
    ``(final_state, ys (T, B, n_out), sums or None)``. ``ys[k]`` is the readout of the state
    after step k. The hidden trajectory is never stored.
  """
  exact = model.exact_reversible if exact is None else exact
  _, batch, _ = inputs_tm.shape
  n = params["W"].shape[0]
  dtype = params["W"].dtype

  def _step(carry, u):
    state, sums, overflow = carry
    if exact:
      state, r, over = grid_leapfrog_step(params, model, state, u)
      overflow = overflow | over
      phi = from_grid(state.phi, model, dtype)
    else:
      state, r = leapfrog_step(params, model, state, u)
      phi = state.phi
    if accumulate_hebbian:
      sums = _compensated_add(sums, hebbian_terms(r, r, u))
    return (state, sums, overflow), readout(params, model, phi)

  sums0 = _zero_sums(params) if accumulate_hebbian else None
  state0 = zero_state(batch, n, jnp.int32 if exact else dtype)
  overflow0 = jnp.zeros((batch, n), bool) if exact else jnp.array(False)
  (state, sums, overflow), ys = lax.scan(_step, (state0, sums0, overflow0), inputs_tm)
  sums = _compensated_total(sums) if accumulate_hebbian else None
  if exact:
    ys = jnp.where(jnp.any(overflow), jnp.nan, ys)
  return state, ys, sums


def contrast_terms(base: Optional[Array], dr: Array, weights: Array, u: Array) -> dict[str, Array]:
  """Hebbian terms of the weighted contrast of S echoes, from their deviations ``dr`` from ``base``.

  With echo ``s`` at ``rho_s = base + dr_s`` (``base = 0`` when None), the terms are
  ``hebbian_terms(d, 2 base + sum_s dr_s, u)`` with ``d = sum_s weights_s dr_s``. For weights
  ``(1,)`` the symmetrised W term is ``rho_0 rho_0^T - base base^T``; for ``(1, -1)`` it is
  ``rho_0 rho_0^T - rho_1 rho_1^T`` (as ``sym((a - b)^T (a + b)) = a^T a - b^T b``).

  Shapes: base (B, N) or None; dr (S, B, N); weights (S,); u (B, n_in).
  """
  d = jnp.tensordot(weights.astype(dr.dtype), dr, 1)
  total = jnp.sum(dr, 0)
  return hebbian_terms(d, total if base is None else 2 * base + total, u)


def echo_phase(params: Params, model: ModelConfig, final_state: State, inputs_tm: Array,
               dl_dy_tm: Array, nudge: Array, weights: Array
               ) -> tuple[State, dict[str, Array], dict[str, Array]]:
  """The echo: from the flipped final state, replay the inputs backwards, nudging the momentum.

  Runs ``S`` echoes at once (stacked on a leading axis), echo ``s`` with nudge strength
  ``nudge[s]``. Echo step ``j`` starts at a state that mirrors forward state ``T - j``: it first
  receives the impulse ``pi -= nudge * g_{T-j}`` with
  ``g = rho'(phi^e) * (dL/dy_{T-j} @ W_out)`` (the loss gradient, evaluated locally at the echo
  position), then takes a leapfrog step with ``u_{T-1-j}``. For ``j = 0`` this is the spec's
  ``pi^e_0 = -pi_T - eps g_T``; for ``j > 0`` the impulse after echo step ``j - 1``.

  Floating-point mode accumulates each echo's own Hebbian terms (``contrast_terms`` with
  ``base = None``). Exact mode also runs an un-nudged twin echo on the integer grid, which
  retraces the forward phase bit for bit, and carries the S nudged echoes as floating-point
  deviations from the twin (:func:`twin_step`); it then accumulates the contrast *echo minus
  forward* directly, to the relative precision of the deviations.

  Args:
    final_state: forward state ``(phi_T, pi_T)``, each (B, N) (int32 grid values in exact mode).
    inputs_tm: (T, B, n_in); read in reverse by the scan (no reversed copy).
    dl_dy_tm: (T, B, n_out), the loss gradient with respect to the readouts.
    nudge: (S,) nudge strength of each echo.
    weights: (S,) weight of each echo in the contrast (see :func:`contrast_terms`).
  Returns:
    ``(final echo states (S, B, N) each, hebbian sums, readout sums)``. The Hebbian sums are
    ``{'W': sym(sum d^T s), 'b': sum d, 'B': sum u^T d}`` over steps and batch, with
    ``sym(M) = (M + M^T) / 2``: per echo, its own terms in floating-point mode, the contrast with
    the forward phase in exact mode. The readout sums are
    ``{'W_out': sum_k dL/dy_k^T rbar_k, 'b_out': sum_k dL/dy_k}`` with ``rbar`` rho(phi) averaged
    over the S echoes (exact mode: rho of the twin, i.e. of the forward state itself).
  """
  n_echo = nudge.shape[0]
  rho, rho_prime = model.activation()
  exact, dtype = model.exact_reversible, params["W"].dtype
  scale = nudge[:, None, None]
  stack = lambda x: jnp.broadcast_to(x, (n_echo,) + x.shape)
  out0 = {"W_out": jnp.zeros_like(params["W_out"]), "b_out": jnp.zeros_like(params["b_out"])}

  def _readout_sums(out, dy, r_here):
    return {"W_out": out["W_out"] + dy.T @ r_here, "b_out": out["b_out"] + jnp.sum(dy, 0)}

  def _float_step(carry, xs):
    state, sums, out = carry
    u, dy = xs
    impulse = scale * (rho_prime(state.phi) * (dy @ params["W_out"]))
    out = _readout_sums(out, dy, jnp.mean(rho(state.phi), 0))
    state, r_mid = leapfrog_step(params, model, State(state.phi, state.pi - impulse), u)
    return (state, _compensated_add(sums, contrast_terms(None, r_mid, weights, u)), out), None

  def _exact_step(carry, xs):
    (twin, dev, overflow), sums, out = carry
    u, dy = xs
    phi = from_grid(twin.phi, model, dtype)
    impulse = scale * (rho_prime(phi + dev.phi) * (dy @ params["W_out"]))
    out = _readout_sums(out, dy, rho(phi))
    twin, r, over, dev, dr = twin_step(params, model, twin, State(dev.phi, dev.pi - impulse), u)
    sums = _compensated_add(sums, contrast_terms(r, dr, weights, u))
    return ((twin, dev, overflow | over), sums, out), None

  sums0 = _zero_sums(params)
  if exact:
    zeros = jnp.zeros((n_echo,) + final_state.phi.shape, dtype)
    carry0 = ((State(final_state.phi, -final_state.pi), State(zeros, zeros), jnp.zeros(final_state.phi.shape, bool)),
              sums0, out0)
    ((twin, dev, overflow), sums, out), _ = lax.scan(_exact_step, carry0, (inputs_tm, dl_dy_tm), reverse=True)
    state = State(from_grid(twin.phi, model, dtype) + dev.phi, from_grid(twin.pi, model, dtype) + dev.pi)
  else:
    state0 = State(stack(final_state.phi), -stack(final_state.pi))
    (state, sums, out), _ = lax.scan(_float_step, (state0, sums0, out0), (inputs_tm, dl_dy_tm), reverse=True)
  sums = _compensated_total(sums)
  sums = {**sums, "W": symmetric(sums["W"])}
  if exact:
    sums = jax.tree.map(lambda x: jnp.where(jnp.any(overflow), jnp.nan, x), sums)
  return state, sums, out


def _zero_sums(params: Params) -> dict[str, tuple[Array, Array]]:
  return {k: (jnp.zeros_like(params[k]), jnp.zeros_like(params[k])) for k in ("W", "b", "B")}


# The one-sided estimator subtracts two sums of T*B terms of order one to recover a difference of
# order eps: plain float32 summation would lose it to round-off that grows with T. Kahan's
# compensated sum keeps the error at one ulp of the total for N^2 extra adds per step (the
# Hebbian matmul itself costs B*N^2).
def _compensated_add(sums, terms):
  def add(pair, x):
    total, comp = pair
    y = x - comp
    t = total + y
    return t, (t - total) - y
  return {k: add(sums[k], terms[k]) for k in terms}


def _compensated_total(sums) -> dict[str, Array]:
  return {k: total - comp for k, (total, comp) in sums.items()}

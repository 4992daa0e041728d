"""The RHEL phases as fused Pallas kernels: one kernel launch runs a whole phase.

Each kernel runs the T-step leapfrog loop inside itself, with ``Ws``, ``b``, ``B`` and the state
on chip and the inputs streamed step by step; the forward kernel writes the readouts, the echo
kernel reads the stored readout errors ``dL/dy`` for its nudges, and the Hebbian accumulators
(and the readout's) are updated in the same loop. The grid runs over batch blocks (``vmap`` over
seeds adds a grid axis in front); each block returns its own partial sums, added up afterwards.
Memory in T besides the inputs, the readouts and their errors: O(1).

The math is :mod:`rhel_jax.integrator`'s and :mod:`rhel_jax.exact`'s, step for step, so the
kernels equal the ``lax.scan`` path (the reference) to float round-off: the same leapfrog, echo
impulses, compensated (Kahan) Hebbian sums, contrast ``hebbian_terms(d, total)`` and, in exact
mode, the integer grid with the un-nudged twin and floating-point deviations. What differs is only
what the Triton lowering (GPU) needs:

* shapes: every array a kernel loads or multiplies is zero-padded to powers of two >= 16 (``N``,
  ``n_in``, ``n_out``, the batch block); padded units have zero couplings and stay at zero, and
  padded sequences are masked out of the Hebbian sums and carry zero readout errors;
* every matmul asks for full float32 precision (Pallas's Triton lowering would otherwise use TF32);
* ``rint`` (round half to even) is built from ``floor`` (Triton has no rounding primitive), equal
  to ``jnp.rint`` for every float (tested);
* the matmuls over the N units run in blocks of ``K_CHUNK`` rows of ``Ws``, and the W accumulator
  in row blocks of ``ACC_ROWS``, so that no other N x N tile passes through shared memory (Triton
  converts matmul operands there); compiled, ``Ws`` itself stays there, which bounds N at
  ``MAX_UNITS_COMPILED``;
* in exact mode the twin's ``Ws rho`` is always its own product, computed as in the forward kernel
  (same blocks, same order), so the twin retraces the forward kernel bit for bit on any backend.

Selected by the ``kernel`` option of ``rhel`` and ``rhel_centered`` (:func:`phase_functions`):
``'scan'`` (the reference), ``'pallas'`` (compiled; needs a GPU) or ``'pallas_interpret'`` (the
same kernels in Pallas's interpreter, on any backend: how the CPU tests run them).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from rhel_jax import integrator
from rhel_jax.exact import _GRID_LIMIT, grid_scale
from rhel_jax.hebbian import kahan_add
from rhel_jax.integrator import EchoResult, ForwardResult
from rhel_jax.model import ModelConfig, Params, symmetric
from rhel_jax.state import State

Array = jax.Array

KERNELS = ("scan", "pallas", "pallas_interpret")
BLOCK_BATCH = 16   # sequences per program: Triton's dots need >= 16 rows; fewer rows, more programs
NUM_WARPS = 4
K_CHUNK = 16       # contraction chunk of the matmuls over the N units (see _dot_chunked)
ACC_ROWS = 64      # the W accumulator is kept as row blocks of this many rows (see _hebbian)
# Triton keeps Ws in shared memory for the whole time loop (its blocks' reads are hoisted out of
# it): 64 KiB of float32 for N = 128, but 256 KiB for N = 256, over a GPU block's 227 KiB (H100,
# H200). An offline compile of the echo kernel for sm_90 asked for 345 KiB at N = 256.
MAX_UNITS_COMPILED = 128
_MIN_DIM = 16      # Triton's dot needs every dimension >= 16


def phase_functions(kernel: str) -> tuple[Callable, Callable]:
  """``(forward_phase, echo_phase)`` for a kernel name in :data:`KERNELS`.

  Both have the signatures of :func:`rhel_jax.integrator.forward_phase` and
  :func:`rhel_jax.integrator.echo_phase`. Raises ValueError for an unknown name, and for
  ``'pallas'`` on a backend the kernels cannot be compiled for (anything but a GPU).
  """
  if kernel not in KERNELS:
    raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
  if kernel == "scan":
    return integrator.forward_phase, integrator.echo_phase
  interpret = kernel == "pallas_interpret"
  if not interpret and jax.default_backend() != "gpu":
    raise ValueError(f"kernel='pallas' compiles the RHEL phases with Pallas's Triton lowering, which needs a GPU; "
                     f"the default backend here is {jax.default_backend()!r}. Use kernel='pallas_interpret' to "
                     "run the same kernels in Pallas's interpreter (slow; for tests), or kernel='scan'.")
  return (functools.partial(forward_phase, interpret=interpret),
          functools.partial(echo_phase, interpret=interpret))


# ---------------------------------------------------------------------------------------------
# Pieces of the step that every kernel shares.

_HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


def _dot(a, b):
  """``a @ b`` in full precision (Pallas's Triton lowering uses TF32 for float32 by default)."""
  return lax.dot_general(a, b, (((1,), (0,)), ((), ())), precision=_HIGHEST)


def _split(x, parts: int, axis: int):
  return jnp.split(x, parts, axis=axis) if parts > 1 else [x]


def _dot_chunked(lhs: list, b_ref) -> list:
  """``[a @ b for a in lhs]`` with ``b`` read from its ref in row blocks of ``K_CHUNK``, each block
  read once for all the products that use it.

  Triton converts matmul operands to their layout through shared memory and registers; cut along
  the contraction, each conversion holds one (K_CHUNK, N) block. Each product sums its blocks in
  the same order wherever it is computed, so the exact mode's twin gets the forward kernel's force
  bit for bit.
  """
  chunk = min(K_CHUNK, b_ref.shape[0])
  parts = b_ref.shape[0] // chunk
  split = [_split(a, parts, 1) for a in lhs]
  out = [None] * len(lhs)
  for i in range(parts):
    block = b_ref[pl.ds(i * chunk, chunk), :]
    for s, a_parts in enumerate(split):
      term = _dot(a_parts[i], block)
      out[s] = term if out[s] is None else out[s] + term
  return out


def _dot_tn(a, b):
  """``a^T @ b``: a batch sum of outer products, (Bb, M), (Bb, N) -> (M, N)."""
  return lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=_HIGHEST)


def _dot_nt(a, b):
  """``a @ b^T``, (Bb, N), (M, N) -> (Bb, M), contracted in chunks of ``K_CHUNK`` (see :func:`_dot_chunked`)."""
  parts = a.shape[1] // min(K_CHUNK, a.shape[1])
  out = None
  for x, y in zip(_split(a, parts, 1), _split(b, parts, 1)):
    term = lax.dot_general(x, y, (((1,), (1,)), ((), ())), precision=_HIGHEST)
    out = term if out is None else out + term
  return out


def rint(x: Array) -> Array:
  """Round half to even, as ``jnp.rint``, from ``floor`` (Triton lowers no rounding primitive).

  Exact for every float: ``x - floor(x)`` is exact where it matters (it can only round for
  ``-0.5 < x < 0``, where the result is 0 either way), and ``floor(x) + 1`` is exact below
  ``2**24``, above which every float32 is already an integer.
  """
  down = jnp.floor(x)
  frac = x - down
  odd = (down - 2 * jnp.floor(down / 2)) == 1
  return jnp.where((frac > 0.5) | ((frac == 0.5) & odd), down + 1, down)


def _acc_blocks(n_pad: int) -> tuple[int, int]:
  """``(rows, blocks)``: the W accumulator as ``blocks`` row blocks of ``rows`` rows."""
  rows = min(ACC_ROWS, n_pad)
  return rows, n_pad // rows


def _hebbian(left, right, u):
  """:func:`rhel_jax.hebbian.hebbian_terms` with full-precision dots and 2-D ``b``: (1, N).

  The W term comes as row blocks ``'W<i>'`` (:func:`_acc_blocks`), so that no (N, N) tile passes
  through shared memory at once.
  """
  _, blocks = _acc_blocks(left.shape[1])
  terms = {f"W{i}": _dot_tn(part, right) for i, part in enumerate(_split(left, blocks, 1))}
  return {**terms, "b": jnp.sum(left, 0, keepdims=True), "B": _dot_tn(u, left)}


def _zero_sums(lay, dtype) -> dict:
  """Empty in-kernel compensated accumulators ``{key: (total, compensation)}`` for :func:`_hebbian`'s terms."""
  rows, blocks = _acc_blocks(lay.n_pad)
  shapes = {**{f"W{i}": (rows, lay.n_pad) for i in range(blocks)}, "b": (1, lay.n_pad), "B": (lay.in_pad, lay.n_pad)}
  return {k: (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for k, shape in shapes.items()}


def _compensated_add(sums: dict, terms: dict) -> dict:
  """:func:`rhel_jax.hebbian.kahan_add` of each of ``terms`` into :func:`_zero_sums`' accumulators."""
  return {k: kahan_add(*sums[k], terms[k]) for k in terms}


def _store_sums(sums, w_ref, b_ref, in_ref) -> None:
  """Writes the compensated totals of :func:`_zero_sums`' accumulators to the per-block outputs."""
  totals = {k: total - comp for k, (total, comp) in sums.items()}
  rows, blocks = _acc_blocks(w_ref.shape[-1])
  for i in range(blocks):
    w_ref[pl.ds(i * rows, rows), :] = totals[f"W{i}"]
  b_ref[...] = totals["b"]
  in_ref[...] = totals["B"]


class _Weights(NamedTuple):
  ws: object    # the ref of symmetric(W), padded to (Np, Np); read in blocks by _dot_chunked
  b: Array      # (1, Np)
  b_in: Array   # (Ip, Np) B, padded
  w_out: Array  # (Op, Np)
  b_out: Array  # (1, Op)


def _load_weights(ws_ref, b_ref, bin_ref, wout_ref, bout_ref) -> _Weights:
  """The weights, read in the loop body; ``Ws`` stays a ref, read in blocks where it is used
  (:func:`_dot_chunked`). Triton hoists these loop-invariant reads: ``Ws`` then sits in shared
  memory for the whole phase (hence ``MAX_UNITS_COMPILED``)."""
  return _Weights(ws_ref, b_ref[...], bin_ref[...], wout_ref[...], bout_ref[...])


def _float_steps(w: _Weights, model: ModelConfig, states: list, u) -> list:
  """:func:`rhel_jax.integrator.leapfrog_step` of each ``(phi, pi)`` in ``states`` (one matmul pass):
  ``[(phi', pi', rho(mid))]``. The drive is :func:`rhel_jax.model.recurrent_drive`'s,
  ``Ws rho / beta + b + B^T u``, in the same order of operations."""
  h = model.dt
  rho, rho_prime = model.activation()
  mids = [phi + (h / 2) * pi for phi, pi in states]
  rs = [rho(mid) for mid in mids]
  coupled = _dot_chunked(rs, w.ws)
  drive_in = _dot(u, w.b_in)
  out = []
  for (_, pi), mid, r, c in zip(states, mids, rs, coupled):
    pi = pi - h * (model.alpha * mid + rho_prime(mid) * (c / model.beta + w.b + drive_in))
    out.append((mid + (h / 2) * pi, pi, r))
  return out


def _from_grid(x, model: ModelConfig, dtype):
  return x.astype(dtype) * grid_scale(model)


def _grid_step(w: _Weights, model: ModelConfig, phi, pi, devs, u, dtype):
  """:func:`rhel_jax.exact.twin_step` (the twin's ``Ws rho`` its own matmul, on every backend).

  ``phi``, ``pi``: int32 (Bb, Np); ``devs``: a tuple of ``(dphi, dpi)`` per echo (empty in the
  forward phase). Returns ``(phi', pi', rho(mid), overflow (Bb, Np) int32, devs', dr per echo)``.
  """
  h = model.dt
  rho, rho_prime = model.activation()
  drift = lambda p: rint((h / 2) * p.astype(dtype)).astype(jnp.int32)
  mid = phi + drift(pi)
  mid_f = _from_grid(mid, model, dtype)
  r, rp = rho(mid_f), rho_prime(mid_f)
  difference = model.activation_difference()
  dmids = [dphi + (h / 2) * dpi for dphi, dpi in devs]
  diffs = [difference(mid_f, dmid) for dmid in dmids]
  coupled = _dot_chunked([r] + [dr for dr, _ in diffs], w.ws)  # the twin's own product, then the deviations'
  drive = coupled[0] / model.beta + w.b + _dot(u, w.b_in)
  kick = rint((h / grid_scale(model)) * (model.alpha * mid_f + rp * drive))
  kick = jnp.clip(jnp.where(jnp.isnan(kick), _GRID_LIMIT, kick), 1 - _GRID_LIMIT, _GRID_LIMIT - 1)
  new_pi = pi - kick.astype(jnp.int32)
  new_phi = mid + drift(new_pi)
  pi_limit = int(_GRID_LIMIT / max(1.0, h / 2))
  overflow = ((jnp.abs(mid) >= _GRID_LIMIT) | (jnp.abs(new_phi) >= _GRID_LIMIT)
              | (jnp.abs(new_pi) >= pi_limit) | (jnp.abs(new_pi - pi) >= _GRID_LIMIT - 1)).astype(jnp.int32)
  new_devs = []
  for (_, dpi), dmid, (_, drp), c in zip(devs, dmids, diffs, coupled[1:]):
    ddrive = c / model.beta
    dpi = dpi - h * (model.alpha * dmid + drp * (drive + ddrive) + rp * ddrive)
    new_devs.append((dmid + (h / 2) * dpi, dpi))
  return new_phi, new_pi, r, overflow, tuple(new_devs), [dr for dr, _ in diffs]


def _contrast(base, rs, weights, valid, u):
  """:func:`rhel_jax.hebbian.contrast_terms` for S echoes given as a list; padded rows masked."""
  d = weights[0] * rs[0]
  total = rs[0]
  for weight, r in zip(weights[1:], rs[1:]):
    d = d + weight * r
    total = total + r
  if base is not None:
    total = 2 * base + total
  return _hebbian(d * valid, total, u)


# ---------------------------------------------------------------------------------------------
# Layout: padding to Triton's shapes, and the block specs.

def _pow2(n: int) -> int:
  return max(_MIN_DIM, 1 << max(0, n - 1).bit_length())


class _Layout(NamedTuple):
  steps: int
  batch: int
  block: int
  batch_pad: int
  n: int
  n_pad: int
  n_in: int
  in_pad: int
  n_out: int
  out_pad: int

  @property
  def blocks(self) -> int:
    return self.batch_pad // self.block


def _layout(params: Params, inputs_tm: Array, block_batch: int) -> _Layout:
  steps, batch, n_in = inputs_tm.shape
  n, n_out = params["W"].shape[0], params["W_out"].shape[0]
  if block_batch < _MIN_DIM or block_batch & (block_batch - 1):
    raise ValueError(f"block_batch must be a power of two >= {_MIN_DIM}, got {block_batch!r}")
  block = min(block_batch, _pow2(batch))
  batch_pad = -(-batch // block) * block
  return _Layout(steps, batch, block, batch_pad, n, _pow2(n), n_in, _pow2(n_in), n_out, _pow2(n_out))


def _pad(x: Array, shape) -> Array:
  return jnp.pad(x, [(0, s - d) for d, s in zip(x.shape, shape)])


def _weight_args(params: Params, lay: _Layout) -> tuple:
  """The kernels' weight inputs, padded: ``(Ws, b (1, Np), B, W_out, b_out (1, Op))``."""
  return (_pad(symmetric(params["W"]), (lay.n_pad, lay.n_pad)), _pad(params["b"][None], (1, lay.n_pad)),
          _pad(params["B"], (lay.in_pad, lay.n_pad)), _pad(params["W_out"], (lay.out_pad, lay.n_pad)),
          _pad(params["b_out"][None], (1, lay.out_pad)))


def _valid(lay: _Layout, dtype) -> Array:
  return (jnp.arange(lay.batch_pad) < lay.batch).astype(dtype)[:, None]


def _whole(x) -> pl.BlockSpec:
  return pl.BlockSpec(x.shape, lambda i: (0,) * len(x.shape))


def _rows(lay: _Layout, width: int, lead: tuple = ()) -> pl.BlockSpec:
  """The program's block of sequences of an array ``lead + (batch_pad, width)``."""
  return pl.BlockSpec(lead + (lay.block, width), lambda i: (0,) * len(lead) + (i, 0))


def _per_block(shape) -> pl.BlockSpec:
  """The program's own slot of a per-block output ``(blocks,) + shape``."""
  return pl.BlockSpec((pl.squeezed,) + tuple(shape), lambda i: (i,) + (0,) * len(shape))


def _call(kernel, lay: _Layout, in_specs, out_specs, out_shape, interpret: bool, name: str, num_warps: int):
  compiler_params = None
  if not interpret and lay.n_pad > MAX_UNITS_COMPILED:
    raise ValueError(f"kernel='pallas': N={lay.n} hidden units (padded to {lay.n_pad}) is more than the compiled kernels "
                     f"hold on chip (N <= {MAX_UNITS_COMPILED}: Ws stays in a GPU block's shared memory, 227 KiB on an "
                     "H100/H200); use kernel='scan'")
  if not interpret:
    from jax.experimental.pallas import triton as pl_triton  # only where it is compiled
    # One stage: the loop over time carries its state, so there is nothing to software-pipeline;
    # the kernels prefetch their per-step inputs themselves.
    compiler_params = pl_triton.CompilerParams(num_warps=num_warps, num_stages=1)
  return pl.pallas_call(kernel, out_shape=out_shape, grid=(lay.blocks,), in_specs=in_specs, out_specs=out_specs,
                        interpret=interpret, compiler_params=compiler_params, name=name)


_SUM_KEYS = ("W", "b", "B")


def _sum_shapes(lay: _Layout) -> dict:
  return {"W": (lay.n_pad, lay.n_pad), "b": (1, lay.n_pad), "B": (lay.in_pad, lay.n_pad)}


def _finish_sums(blocks: dict, lay: _Layout) -> dict:
  """Per-block compensated sums -> ``{'W': (N, N), 'b': (N,), 'B': (n_in, N)}`` summed over blocks."""
  total = {k: jnp.sum(blocks[k], 0) for k in _SUM_KEYS}
  return {"W": total["W"][:lay.n, :lay.n], "b": total["b"][0, :lay.n], "B": total["B"][:lay.n_in, :lay.n]}


# ---------------------------------------------------------------------------------------------
# The forward phase.

def forward_phase(params: Params, model: ModelConfig, inputs_tm: Array, *, accumulate_hebbian: bool = False,
                  exact: bool | None = None, interpret: bool = False, block_batch: int = BLOCK_BATCH,
                  num_warps: int = NUM_WARPS) -> ForwardResult:
  """:func:`rhel_jax.integrator.forward_phase` as one Pallas kernel.

  Args:
    inputs_tm: (T, B, n_in), time-major.
    accumulate_hebbian: also return the inference-phase Hebbian sums (the one-sided estimator's).
    exact: run on the integer grid (default ``model.exact_reversible``).
    interpret: run in Pallas's interpreter (any backend) instead of compiling with Triton (GPU).
    block_batch: sequences per program (a power of two >= 16).
    num_warps: Triton warps per program (compiled kernels only).
  Returns:
    :class:`rhel_jax.integrator.ForwardResult`: final state (B, N) each (int32 grid values in
    exact mode), readouts ``ys (T, B, n_out)`` (NaN where the grid overflowed), sums or None.
  """
  exact = model.exact_reversible if exact is None else exact
  lay = _layout(params, inputs_tm, block_batch)
  dtype = params["W"].dtype
  rho, _ = model.activation()
  w = _weight_args(params, lay)
  x = _pad(inputs_tm, (lay.steps, lay.batch_pad, lay.in_pad))
  state_dtype = jnp.int32 if exact else dtype

  def kernel(x_ref, ws_ref, b_ref, bin_ref, wout_ref, bout_ref, valid_ref, ys_ref, phi_ref, pi_ref, *rest):
    valid = valid_ref[...]

    def step(k, carry):
      wk = _load_weights(ws_ref, b_ref, bin_ref, wout_ref, bout_ref)
      phi, pi, over, sums, u = carry
      u_next = x_ref[jnp.minimum(k + 1, lay.steps - 1)]  # issued a step ahead: its latency hides behind this one
      if exact:
        phi, pi, r, step_over, _, _ = _grid_step(wk, model, phi, pi, (), u, dtype)
        over = over | step_over
        phi_f = _from_grid(phi, model, dtype)
      else:
        [(phi, pi, r)] = _float_steps(wk, model, [(phi, pi)], u)
        phi_f = phi
      ys_ref[k] = _dot_nt(rho(phi_f), wk.w_out) + wk.b_out
      if accumulate_hebbian:
        sums = _compensated_add(sums, _hebbian(r * valid, r, u))
      return phi, pi, over, sums, u_next

    zeros = jnp.zeros((lay.block, lay.n_pad), state_dtype)
    sums0 = _zero_sums(lay, dtype) if accumulate_hebbian else None
    phi, pi, over, sums, _ = lax.fori_loop(
        0, lay.steps, step, (zeros, zeros, jnp.zeros((lay.block, lay.n_pad), jnp.int32), sums0, x_ref[0]))
    phi_ref[...] = phi
    pi_ref[...] = pi
    rest = list(rest)
    if exact:
      rest.pop(0)[...] = over
    if accumulate_hebbian:
      _store_sums(sums, *rest)

  args = (x, *w, _valid(lay, dtype))
  in_specs = [_rows(lay, lay.in_pad, (lay.steps,)), *map(_whole, w), _rows(lay, 1)]
  out_shape = [jax.ShapeDtypeStruct((lay.steps, lay.batch_pad, lay.out_pad), dtype),
               jax.ShapeDtypeStruct((lay.batch_pad, lay.n_pad), state_dtype),
               jax.ShapeDtypeStruct((lay.batch_pad, lay.n_pad), state_dtype)]
  out_specs = [_rows(lay, lay.out_pad, (lay.steps,)), _rows(lay, lay.n_pad), _rows(lay, lay.n_pad)]
  if exact:
    out_shape.append(jax.ShapeDtypeStruct((lay.batch_pad, lay.n_pad), jnp.int32))
    out_specs.append(_rows(lay, lay.n_pad))
  if accumulate_hebbian:
    for key, shape in _sum_shapes(lay).items():
      out_shape.append(jax.ShapeDtypeStruct((lay.blocks,) + shape, dtype))
      out_specs.append(_per_block(shape))
  outs = _call(kernel, lay, in_specs, out_specs, out_shape, interpret, "rhel_forward", num_warps)(*args)
  ys, phi, pi, *rest = outs
  ys = ys[:, :lay.batch, :lay.n_out]
  if exact:
    over = rest.pop(0)
    ys = jnp.where(jnp.any(over[:lay.batch, :lay.n] != 0), jnp.nan, ys)
  sums = _finish_sums(dict(zip(_SUM_KEYS, rest)), lay) if accumulate_hebbian else None
  if accumulate_hebbian:  # symmetrised once, as the scan path's
    sums = {**sums, "W": symmetric(sums["W"])}
  return ForwardResult(State(phi[:lay.batch, :lay.n], pi[:lay.batch, :lay.n]), ys, sums)


# ---------------------------------------------------------------------------------------------
# The echo.

def echo_phase(params: Params, model: ModelConfig, final_state: State, inputs_tm: Array, dl_dy_tm: Array,
               nudge: Array, weights: Array, *, compensated: bool = True, interpret: bool = False,
               block_batch: int = BLOCK_BATCH, num_warps: int = NUM_WARPS) -> EchoResult:
  """:func:`rhel_jax.integrator.echo_phase` as one Pallas kernel (S echoes, each its own state).

  Args:
    final_state: the forward phase's final state, each (B, N) (int32 grid values in exact mode).
    inputs_tm: (T, B, n_in); read backwards inside the kernel.
    dl_dy_tm: (T, B, n_out), the loss gradient with respect to the readouts.
    nudge: (S,) nudge strength of each echo (may be traced).
    weights: (S,) weight of each echo in the contrast.
    compensated: Kahan-compensated Hebbian sums; plain sums otherwise (the scan path's option).
    interpret, block_batch, num_warps: as in :func:`forward_phase`.
  Returns:
    :class:`rhel_jax.integrator.EchoResult`, as the ``lax.scan`` path's.
  """
  exact = model.exact_reversible
  n_echo = nudge.shape[0]
  lay = _layout(params, inputs_tm, block_batch)
  dtype = params["W"].dtype
  rho, rho_prime = model.activation()
  w = _weight_args(params, lay)
  x = _pad(inputs_tm, (lay.steps, lay.batch_pad, lay.in_pad))
  dy_all = _pad(dl_dy_tm.astype(dtype), (lay.steps, lay.batch_pad, lay.out_pad))
  state = State(*(_pad(s, (lay.batch_pad, lay.n_pad)) for s in final_state))
  nudge, weights = jnp.asarray(nudge, dtype), jnp.asarray(weights, dtype)

  def kernel(x_ref, dy_ref, phi_ref, pi_ref, nudge_ref, weights_ref, ws_ref, b_ref, bin_ref, wout_ref, bout_ref,
             valid_ref, w_sum_ref, b_sum_ref, in_sum_ref, out_sum_ref, phi_out_ref, pi_out_ref, *rest):
    valid = valid_ref[...]
    scales = [nudge_ref[s] for s in range(n_echo)]
    contrast_weights = [weights_ref[s] for s in range(n_echo)]

    def step(j, carry):
      wk = _load_weights(ws_ref, b_ref, bin_ref, wout_ref, bout_ref)
      echoes, twin, over, sums, out, (u, dy) = carry
      k_next = jnp.maximum(lay.steps - 2 - j, 0)  # step T-1-j's successor, loaded a step ahead
      u_dy_next = (x_ref[k_next], dy_ref[k_next])
      g = _dot(dy, wk.w_out)
      if exact:
        phi, pi = twin
        phi_f = _from_grid(phi, model, dtype)
        out = out + _dot_tn(dy, rho(phi_f))
        devs = tuple((dphi, dpi - scale * (rho_prime(phi_f + dphi) * g))
                     for (dphi, dpi), scale in zip(echoes, scales))
        phi, pi, r, step_over, echoes, drs = _grid_step(wk, model, phi, pi, devs, u, dtype)
        twin, over = (phi, pi), over | step_over
        terms = _contrast(r, drs, contrast_weights, valid, u)
      else:
        r_here = rho(echoes[0][0])
        for phi, _ in echoes[1:]:
          r_here = r_here + rho(phi)
        out = out + _dot_tn(dy, r_here / n_echo)
        stepped = _float_steps(wk, model, [(phi, pi - scale * (rho_prime(phi) * g))
                                           for (phi, pi), scale in zip(echoes, scales)], u)
        echoes = tuple((phi, pi) for phi, pi, _ in stepped)
        terms = _contrast(None, [r for _, _, r in stepped], contrast_weights, valid, u)
      sums = (_compensated_add(sums, terms) if compensated
              else {k: (total + terms[k], comp) for k, (total, comp) in sums.items()})
      return echoes, twin, over, sums, out, u_dy_next

    phi0, pi0 = phi_ref[...], pi_ref[...]
    zeros = jnp.zeros((lay.block, lay.n_pad), dtype)
    if exact:
      echoes0 = tuple((zeros, zeros) for _ in range(n_echo))
      twin0 = (phi0, -pi0)
    else:
      echoes0 = tuple((phi0, -pi0) for _ in range(n_echo))
      twin0 = None
    sums0 = _zero_sums(lay, dtype)
    out0 = jnp.zeros((lay.out_pad, lay.n_pad), dtype)
    last = lay.steps - 1
    echoes, twin, over, sums, out, _ = lax.fori_loop(
        0, lay.steps, step, (echoes0, twin0, jnp.zeros((lay.block, lay.n_pad), jnp.int32), sums0, out0,
                             (x_ref[last], dy_ref[last])))
    _store_sums(sums, w_sum_ref, b_sum_ref, in_sum_ref)
    out_sum_ref[...] = out
    for s, (phi, pi) in enumerate(echoes):
      phi_out_ref[s] = phi
      pi_out_ref[s] = pi
    if exact:
      twin_phi_ref, twin_pi_ref, over_ref = rest
      twin_phi_ref[...], twin_pi_ref[...] = twin
      over_ref[...] = over

  args = (x, dy_all, *state, nudge, weights, *w, _valid(lay, dtype))
  in_specs = [_rows(lay, lay.in_pad, (lay.steps,)), _rows(lay, lay.out_pad, (lay.steps,)),
              _rows(lay, lay.n_pad), _rows(lay, lay.n_pad), _whole(nudge), _whole(weights), *map(_whole, w),
              _rows(lay, 1)]
  shapes = _sum_shapes(lay)
  out_shape = [*(jax.ShapeDtypeStruct((lay.blocks,) + shapes[k], dtype) for k in _SUM_KEYS),
               jax.ShapeDtypeStruct((lay.blocks, lay.out_pad, lay.n_pad), dtype),
               jax.ShapeDtypeStruct((n_echo, lay.batch_pad, lay.n_pad), dtype),
               jax.ShapeDtypeStruct((n_echo, lay.batch_pad, lay.n_pad), dtype)]
  out_specs = [*(_per_block(shapes[k]) for k in _SUM_KEYS), _per_block((lay.out_pad, lay.n_pad)),
               _rows(lay, lay.n_pad, (n_echo,)), _rows(lay, lay.n_pad, (n_echo,))]
  if exact:
    out_shape += [jax.ShapeDtypeStruct((lay.batch_pad, lay.n_pad), jnp.int32)] * 3
    out_specs += [_rows(lay, lay.n_pad)] * 3
  outs = _call(kernel, lay, in_specs, out_specs, out_shape, interpret, "rhel_echo", num_warps)(*args)
  w_sums, b_sums, in_sums, out_sums, phi, pi, *rest = outs
  sums = _finish_sums({"W": w_sums, "b": b_sums, "B": in_sums}, lay)
  sums = {**sums, "W": symmetric(sums["W"])}
  readout_sums = {"W_out": jnp.sum(out_sums, 0)[:lay.n_out, :lay.n],
                  "b_out": jnp.sum(dl_dy_tm.astype(dtype), (0, 1))}
  phi, pi = phi[:, :lay.batch, :lay.n], pi[:, :lay.batch, :lay.n]
  if exact:
    twin_phi, twin_pi, over = (a[:lay.batch, :lay.n] for a in rest)
    phi = _from_grid(twin_phi, model, dtype) + phi
    pi = _from_grid(twin_pi, model, dtype) + pi
    sums = jax.tree.map(lambda v: jnp.where(jnp.any(over != 0), jnp.nan, v), sums)
  return EchoResult(State(phi, pi), sums, readout_sums)

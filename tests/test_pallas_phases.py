"""The fused Pallas kernels of the RHEL phases equal the ``lax.scan`` path (the reference).

On CPU the kernels run in Pallas's interpreter (``kernel='pallas_interpret'``); on a GPU
(``JAX_PLATFORMS=cuda``, as ``benchmarks/gpu_check.sh`` runs this file) the same tests compile
them with Triton (``kernel='pallas'``). The scan references are computed at full matmul precision
(a GPU's default is TF32 for float32), as the kernels are.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import rhel_jax
from benchmarks import triton_offline
from rhel_jax import layer, pallas_phases
from rhel_jax.integrator import echo_phase, forward_phase
from tests.helpers import make_problem, rel_error

ON_GPU = jax.default_backend() == "gpu"
KERNEL = "pallas" if ON_GPU else "pallas_interpret"
METHODS = ("rhel", "rhel_centered")
# Pads every dimension: batch 20 -> 32 (two blocks of 16, the second part padding), N 24 -> 32,
# n_in 3 -> 16, n_out 2 -> 16.
SHAPE = dict(batch=20, n_hidden=24, n_in=3, n_out=2, steps=10)


def _problem(loss="mse", exact=False, dtype=jnp.float64, **kw):
  params, model, inputs, targets, mask = make_problem(loss, dtype=dtype, **{**SHAPE, **kw})
  return params, dataclasses.replace(model, exact_reversible=exact), inputs, targets, mask


def _gradient(method, problem, loss="mse", **options):
  with jax.default_matmul_precision("highest"):
    return rhel_jax.gradient(method, *problem, loss=loss, **options)


def _as_float64(problem):
  return jax.tree.map(lambda a: a.astype(jnp.float64) if getattr(a, "dtype", None) == jnp.float32 else a, problem)


class KernelEqualsScanTest(parameterized.TestCase):

  @parameterized.parameters(("rhel", False, "mse"), ("rhel", True, "ce_mean"), ("rhel_centered", False, "ce_mean"),
                            ("rhel_centered", True, "mse"))
  def test_gradient_equals_the_scan_path_in_float64(self, method, exact, loss):
    problem = _problem(loss, exact)
    want_loss, want = _gradient(method, problem, loss)
    got_loss, got = _gradient(method, problem, loss, kernel=KERNEL)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-13)
    for key in want:
      # float64 round-off, divided by the nudge (eps 1e-5 per sequence) in the estimators.
      self.assertLess(rel_error(got[key], want[key]), 1e-9, f"{method} exact={exact} {loss}: grads['{key}']")

  @parameterized.parameters(*METHODS)
  def test_float32_is_as_accurate_as_the_scan_path(self, method):
    # Plain float32: both paths' errors are round-off divided by eps, so they differ by as much
    # as each differs from the truth; the kernel must be as close to float64 as the scan is.
    problem = _problem("bce", dtype=jnp.float32, steps=20)
    _, truth = _gradient(method, _as_float64(problem), "bce", eps=3e-4)
    _, scan = _gradient(method, problem, "bce", eps=3e-4)
    _, kernel = _gradient(method, problem, "bce", eps=3e-4, kernel=KERNEL)
    for key in truth:
      scan_err, kernel_err = rel_error(scan[key], truth[key]), rel_error(kernel[key], truth[key])
      self.assertLess(kernel_err, 2.5 * scan_err + 1e-6, f"{method}: grads['{key}'] kernel {kernel_err:.2e}, "
                                                         f"scan {scan_err:.2e} from float64")

  @parameterized.parameters(*METHODS)
  def test_exact_mode_float32_equals_the_scan_path(self, method):
    # Exact mode: no cancellation, so the float32 kernel and scan agree to float32 round-off.
    problem = _problem("bce", exact=True, dtype=jnp.float32, steps=20)
    _, want = _gradient(method, problem, "bce")
    _, got = _gradient(method, problem, "bce", kernel=KERNEL)
    for key in want:
      self.assertLess(rel_error(got[key], want[key]), 1e-5, f"{method}: grads['{key}']")

  def test_phases_equal_the_scan_phases(self):
    # Readouts, final states, the two echoes' final states and every sum, in float64; N = 72 pads to
    # 128, so the matmuls run in 8 contraction chunks and the W accumulator in 2 row blocks.
    params, model, inputs, _, _ = _problem(n_hidden=72)
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    fwd, echo = pallas_phases.phase_functions(KERNEL)
    want_fwd = forward_phase(params, model, inputs_tm, accumulate_hebbian=True)
    got_fwd = fwd(params, model, inputs_tm, accumulate_hebbian=True)
    dl_dy = jax.random.normal(jax.random.key(3), want_fwd.ys.shape, jnp.float64)
    nudge, weights = jnp.array([0.1, -0.1]), jnp.array([1.0, -1.0])
    chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    # Compensated sums (the one-sided rule's) and plain ones (the centered rule's, outside exact mode).
    for compensated in (True, False):
      want_echo = echo_phase(params, model, want_fwd.final, inputs_tm, dl_dy, nudge, weights, compensated=compensated)
      got_echo = echo(params, model, got_fwd.final, inputs_tm, dl_dy, nudge, weights, compensated=compensated)
      jax.tree.map(chex_close, (got_fwd, got_echo), (want_fwd, want_echo))


class ExactKernelTest(absltest.TestCase):

  def test_unnudged_echo_kernel_retraces_the_forward_kernel_bit_for_bit(self):
    # The twin's force must come out alike in both kernels: back at the zero start state exactly,
    # and the contrast exactly zero at every step.
    params, model, inputs, _, _ = _problem(exact=True, dtype=jnp.float32, steps=300)
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    fwd, echo = pallas_phases.phase_functions(KERNEL)
    final, ys = jax.jit(lambda p, x: fwd(p, model, x)[:2])(params, inputs_tm)
    self.assertFalse(bool(jnp.all(final.phi == 0)))
    end, contrast = jax.jit(lambda p, f, x, y: echo(p, model, f, x, y, jnp.zeros((2,), jnp.float32),
                                                    jnp.array([1.0, -1.0], jnp.float32))[:2])(
        params, final, inputs_tm, jnp.ones_like(ys))
    np.testing.assert_array_equal(end.phi, 0)
    np.testing.assert_array_equal(end.pi, 0)
    for key in contrast:
      np.testing.assert_array_equal(contrast[key], 0)

  def test_rint_equals_jnp_rint(self):
    for dtype in (jnp.float32, jnp.float64):
      ties = np.arange(-40, 41) / 2
      near_half = np.array([np.nextafter(0.5, 0), np.nextafter(0.5, 1), np.nextafter(-0.5, 0), np.nextafter(-0.5, -1),
                            np.nextafter(1.5, 0), np.nextafter(-2.5, 0), 2.0 ** 22 + 0.5, 2.0 ** 23 - 0.5, 2.0 ** 23 + 1,
                            2.0 ** 24 + 2, 2.0 ** 30, -2.0 ** 30, 1e-30, -1e-30, 0.0, -0.0, np.inf, -np.inf, np.nan])
      rand = np.asarray(jax.random.normal(jax.random.key(0), (5000,))) * np.logspace(-3, 9, 5000)
      x = jnp.asarray(np.concatenate([ties, near_half, rand]), dtype)
      np.testing.assert_array_equal(jax.jit(pallas_phases.rint)(x), jnp.rint(x), err_msg=str(dtype))


class KernelUseTest(absltest.TestCase):

  def test_vmap_over_seeds_equals_a_loop(self):
    problems = [_problem(seed=s) for s in range(2)]
    stacked = [jax.tree.map(lambda *xs: jnp.stack(xs), *[p[i] for p in problems]) for i in (0, 2, 3, 4)]
    model = problems[0][1]
    fn = rhel_jax.gradient_fn("rhel_centered", model, dtype=jnp.float64, kernel=KERNEL)
    out = jax.jit(jax.vmap(fn))(*stacked)
    for seed, problem in enumerate(problems):
      single = fn(problem[0], *problem[2:])
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a[seed], b, rtol=1e-12, atol=1e-14), out, single)

  def test_kernel_option_is_validated(self):
    params, model, inputs, targets, mask = _problem(steps=3)
    with self.assertRaisesRegex(ValueError, r"kernel must be one of \['scan', 'pallas', 'pallas_interpret'\], "
                                            r"got 'triton'"):
      rhel_jax.gradient("rhel", params, model, inputs, targets, mask, kernel="triton")
    with self.assertRaisesRegex(ValueError, r"option\(s\) \['kernel'\] not accepted by method 'bptt'"):
      rhel_jax.gradient("bptt", params, model, inputs, targets, mask, kernel="pallas")
    with self.assertRaisesRegex(ValueError, "block_batch must be a power of two >= 16, got 24"):
      pallas_phases.forward_phase(params, model, jnp.swapaxes(inputs, 0, 1), interpret=True, block_batch=24)
    wide = _problem(steps=3, n_hidden=130)[0]
    with self.assertRaisesRegex(ValueError, r"N=130 hidden units \(padded to 256\) is more than the compiled kernels hold"):
      pallas_phases.forward_phase(wide, model, jnp.swapaxes(inputs, 0, 1), interpret=False)
    if not ON_GPU:
      with self.assertRaisesRegex(ValueError, "kernel='pallas' .* needs a GPU; the default backend here is 'cpu'"):
        rhel_jax.gradient("rhel_centered", params, model, inputs, targets, mask, kernel="pallas")
    # The layer (VJP) form runs on lax.scan only: a fused kernel is refused, not silently replaced.
    layer_params = {k: params[k] for k in ("W", "b", "B")}
    for method in METHODS:
      with self.assertRaisesRegex(ValueError, r"kernel='pallas_interpret': the layer \(VJP\) form of RHEL runs on "
                                              "lax.scan only"):
        layer.hamiltonian_layer(layer_params, model, jnp.swapaxes(inputs, 0, 1), method=method,
                                kernel="pallas_interpret")

  def test_kernels_lower_to_triton_for_a_gpu(self):
    # What CI can check without a GPU: both phases, in both modes, lower to Triton kernels for
    # CUDA (one per phase). Compiling the Triton IR to GPU code needs a GPU (benchmarks/gpu_check.sh).
    if ON_GPU:
      self.skipTest("on a GPU the other tests compile and run the kernels themselves")
    for method in METHODS:
      for exact in (False, True):
        modules = triton_offline.kernel_modules(method, 64, exact, steps=10, batch=20)
        self.assertLen(modules, 2, f"{method} exact={exact}")
        for module in modules:
          self.assertIn("tt.func public", module)
          self.assertIn("tt.dot", module)


if __name__ == "__main__":
  absltest.main()

"""RHEL's memory does not grow with T beyond O(T) readout-sized buffers; BPTT's grows with T*N.

Measured on the compiled program (XLA's buffer assignment), so the test needs no timing and
runs in seconds: the temporary bytes at two sequence lengths give the growth per step.
"""
import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import rhel_jax
from rhel_jax.losses import mse

N, BATCH, N_IN, N_OUT = 64, 8, 2, 2


def temp_floats_per_step_per_sequence(method, **options):
  params = rhel_jax.init_params(jax.random.key(0), n_in=N_IN, n_hidden=N, n_out=N_OUT, dtype=jnp.float32)
  temps = []
  for steps in (200, 800):
    spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    step = rhel_jax.gradient_fn(method, rhel_jax.ModelConfig(), loss=mse, **options)
    compiled = step.lower(params, spec(BATCH, steps, N_IN), spec(BATCH, steps, N_OUT), spec(BATCH, steps)).compile()
    temps.append(compiled.memory_analysis().temp_size_in_bytes)
  return (temps[1] - temps[0]) / (600 * BATCH * 4)


class MemoryTest(parameterized.TestCase):

  @parameterized.parameters(("rhel", {"eps": 1e-2}), ("rhel_centered", {"eps": 1e-2}), ("eprop", {}))
  def test_no_hidden_trajectory_is_stored(self, method, options):
    growth = temp_floats_per_step_per_sequence(method, **options)
    print(f"\n{method}: temp memory grows by {growth:.1f} floats per step per sequence (N={N})")
    # Readouts and their cotangents (a few copies of n_out floats) are allowed; a stored hidden
    # state would cost at least N = 64 floats per step.
    self.assertLessEqual(growth, 3 * (N_IN + N_OUT))

  def test_bptt_stores_the_trajectory(self):
    growth = temp_floats_per_step_per_sequence("bptt")
    print(f"\nbptt: temp memory grows by {growth:.1f} floats per step per sequence (N={N})")
    self.assertGreaterEqual(growth, 2 * N)


if __name__ == "__main__":
  absltest.main()

"""rhel_jax.nn.HamiltonianRNN: jax.grad through stacked layers runs the echo and equals BPTT; with a
linear head it is rhel_jax.gradient's model, with that function's gradients in every mode."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import nnx

import rhel_jax
from rhel_jax import layer
from rhel_jax.losses import LOSSES
from rhel_jax.methods import layer_methods
from rhel_jax.nn import HamiltonianRNN
from tests.helpers import cosine, make_problem, rel_error

N_IN, WIDTH, N_OUT = 3, 12, 2


class Stack(nnx.Module):
  """encoder -> two HamiltonianRNN layers -> nonlinear head: a model a user would write."""

  def __init__(self, method, eps, seed=0, dtype=jnp.float64, exact=False, unroll=None):
    rngs = nnx.Rngs(seed)
    self.encoder = nnx.Linear(N_IN, 5, param_dtype=dtype, rngs=rngs)
    # Init scale 0.3: gradients stay O(1-100) at T=1000 (at 0.5 they reach ~1e4, the edge of chaos,
    # where eps must shrink with them).
    kw = dict(method=method, eps=eps, param_dtype=dtype, w_scale=0.3, in_scale=0.3, exact_reversible=exact,
              unroll=unroll, rngs=rngs)
    self.rnn1 = HamiltonianRNN(5, WIDTH, **kw)
    self.rnn2 = HamiltonianRNN(WIDTH, WIDTH, **kw)
    self.hidden = nnx.Linear(WIDTH, 8, param_dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(8, N_OUT, param_dtype=dtype, rngs=rngs)

  def __call__(self, x):
    h = self.rnn2(self.rnn1(jnp.tanh(self.encoder(x))))
    return self.out(jnp.tanh(self.hidden(h)))


def _data(steps, batch=4, seed=1):
  kx, ky = jax.random.split(jax.random.key(seed))
  x = 0.5 * jax.random.normal(kx, (batch, steps, N_IN), jnp.float64)
  y = jax.random.normal(ky, (batch, steps, N_OUT), jnp.float64)
  return x, y


def _loss_fn(graphdef):
  def loss(state, x, y):
    out = nnx.merge(graphdef, state)(x)
    # A user's loss: Huber on the last 20 steps plus a small penalty on all outputs.
    return jnp.mean(_huber(out[:, -20:] - y[:, -20:])) + 1e-2 * jnp.mean(out ** 2)
  return loss


def _huber(d):
  return jnp.where(jnp.abs(d) < 1, 0.5 * d ** 2, jnp.abs(d) - 0.5)


def _grads(method, eps, steps, seed=0, exact=False, unroll=None):
  graphdef, state = nnx.split(Stack(method, eps, seed, exact=exact, unroll=unroll))
  x, y = _data(steps)
  return jax.jit(jax.grad(_loss_fn(graphdef)))(state, x, y)


def _leaves(state):
  return {jax.tree_util.keystr(path): np.asarray(v) for path, v in jax.tree_util.tree_leaves_with_path(state)}


class StackMatchesBpttTest(parameterized.TestCase):

  @parameterized.parameters(100, 1000)
  def test_centered_equals_bptt_for_every_parameter(self, steps):
    ref = _leaves(_grads("bptt", None, steps))
    got = _leaves(_grads("rhel_centered", 1e-5, steps))
    self.assertEqual(ref.keys(), got.keys())
    self.assertLen(ref, 3 * 2 + 2 * 3)  # encoder, hidden, out: kernel + bias; two layers: W, b, B
    for name in ref:
      self.assertGreaterEqual(cosine(got[name], ref[name]), 0.999999, name)
      self.assertLessEqual(rel_error(got[name], ref[name]), 1e-5, name)

  @parameterized.parameters("rhel", "rhel_centered")
  def test_exact_mode_equals_bptt_for_every_parameter(self, method):
    # The layers' input cotangents carry the encoder's gradient: in exact mode they are the contrast
    # of each echo with the grid twin. Exact mode approximates BPTT of the float map to the grid's
    # resolution (2**-26) and the one-sided rule adds its O(eps) bias.
    ref = _leaves(_grads("bptt", None, 100))
    got = _leaves(_grads(method, 1e-5, 100, exact=True))
    self.assertEqual(ref.keys(), got.keys())
    for name in ref:
      self.assertLessEqual(rel_error(got[name], ref[name]), 2e-5 if method == "rhel" else 5e-6, name)

  @parameterized.parameters(100, 1000)
  def test_one_sided_error_is_its_order_eps_bias(self, steps):
    ref = _leaves(_grads("bptt", None, steps))
    errors = {}
    for eps in (1e-5, 1e-6):
      got = _leaves(_grads("rhel", eps, steps))
      errors[eps] = max(rel_error(got[k], ref[k]) for k in ref)
    self.assertLess(errors[1e-5], 1e-2)
    # Bias O(eps): ten times less eps, about ten times less error.
    self.assertBetween(errors[1e-5] / errors[1e-6], 5.0, 20.0)

  @parameterized.parameters("rhel", "rhel_centered")
  def test_what_the_backward_pass_keeps_grows_only_with_the_inputs(self, method):
    # Residuals saved for the VJP: the inputs (T, B, n_in) and O(1) state, never (T, B, N) states;
    # the one-sided rule adds the (T, B, n_in) input projections its input cotangent needs.
    layer = HamiltonianRNN(N_IN, WIDTH, method=method, eps=1e-5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)

    def residual_size(steps):
      x, _ = _data(steps)
      _, vjp_fn = jax.vjp(lambda s: nnx.merge(graphdef, s)(x), state)
      return sum(int(np.size(r)) for r in jax.tree.leaves(vjp_fn))

    per_step = 4 * N_IN * (2 if method == "rhel" else 1)  # batch 4
    self.assertEqual(residual_size(100) - residual_size(50), 50 * per_step)
    self.assertLess(residual_size(50), 50 * 4 * WIDTH)


class Readout(nnx.Module):
  """HamiltonianRNN + a linear head: rhel_jax.gradient's model, built from rhel_jax parameters."""

  def __init__(self, params, model, method, eps):
    n_in, n = params["B"].shape
    n_out = params["W_out"].shape[0]
    dtype = params["W"].dtype
    self.rnn = HamiltonianRNN(n_in, n, method=method, eps=eps, alpha=model.alpha, beta=model.beta, dt=model.dt,
                              rho=model.rho, exact_reversible=model.exact_reversible, grid_bits=model.grid_bits,
                              param_dtype=dtype, rngs=nnx.Rngs(0))
    self.head = nnx.Linear(n, n_out, param_dtype=dtype, rngs=nnx.Rngs(0))
    for name in ("W", "b", "B"):
      getattr(self.rnn, name)[...] = params[name]
    self.head.kernel[...] = params["W_out"].T
    self.head.bias[...] = params["b_out"]

  def __call__(self, x):
    return self.head(self.rnn(x))


class SameModelAsGradientTest(parameterized.TestCase):

  def _both(self, method, exact, dtype, eps):
    params, _, inputs, targets, mask = make_problem("bce", steps=60, dtype=dtype)
    model = rhel_jax.ModelConfig(dt=0.5, exact_reversible=exact)
    graphdef, state = nnx.split(Readout(params, model, method, eps))
    loss_fn = lambda s: LOSSES["bce"](nnx.merge(graphdef, s)(inputs), targets, mask)
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(state)
    got = {"W": grads["rnn"]["W"][...], "b": grads["rnn"]["b"][...], "B": grads["rnn"]["B"][...],
           "W_out": grads["head"]["kernel"][...].T, "b_out": grads["head"]["bias"][...]}
    want_loss, want = rhel_jax.gradient(method, params, model, inputs, targets, mask, loss="bce", eps=eps)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12 if dtype == jnp.float64 else 1e-6)
    return got, want

  @parameterized.parameters(("rhel", jnp.float64, 1e-13), ("rhel_centered", jnp.float64, 1e-13),
                            ("rhel", jnp.float32, 3e-6), ("rhel_centered", jnp.float32, 3e-6))
  def test_exact_mode_gives_the_gradient_of_rhel_jax_gradient(self, method, dtype, tol):
    # Both run the same two phases on the integer grid; only the order of a few float sums differs
    # (the head's autodiff against the echo's per-step readout sums), which the contrast with the
    # grid twin does not amplify by 1/eps.
    got, want = self._both(method, True, dtype, 1e-5)
    for name in want:
      self.assertLessEqual(rel_error(got[name], want[name]), tol, name)

  @parameterized.parameters("rhel", "rhel_centered")
  def test_float_mode_gives_the_gradient_of_rhel_jax_gradient(self, method):
    # In floating point the same echo runs from the same state; W_out's gradient differs by the
    # O(eps) gap between the echo's positions (which rhel_jax.gradient reads it from) and the
    # forward's (which the head's autodiff reads).
    got, want = self._both(method, False, jnp.float64, 1e-5)
    for name in ("W", "b", "B", "b_out"):
      self.assertLessEqual(rel_error(got[name], want[name]), 1e-12, name)
    self.assertLessEqual(rel_error(got["W_out"], want["W_out"]), 1e-4)


class RegistryTest(absltest.TestCase):

  def test_the_layer_offers_exactly_the_registry_methods_with_a_vjp_form(self):
    # A method registered with a VJP form becomes a layer method with no other change.
    rhel_jax.register(rhel_jax.Method("test_layer_bptt", rhel_jax.bptt, vjp=layer.bptt_layer))
    try:
      offered = [name for name in rhel_jax.METHODS if _layer_accepts(name)]
      self.assertEqual(offered, [n for n, m in rhel_jax.METHODS.items() if m.vjp is not None])
      self.assertEqual(tuple(offered), layer_methods())
      self.assertEqual(offered, ["bptt", "rhel", "rhel_centered", "test_layer_bptt"])
      x, _ = _data(20)
      ys = {m: HamiltonianRNN(N_IN, WIDTH, method=m, param_dtype=jnp.float64, rngs=nnx.Rngs(0))(x)
            for m in ("bptt", "test_layer_bptt")}
      np.testing.assert_array_equal(ys["bptt"], ys["test_layer_bptt"])
    finally:
      rhel_jax.unregister("test_layer_bptt")
    self.assertFalse(_layer_accepts("test_layer_bptt"))


def _layer_accepts(method):
  try:
    HamiltonianRNN(N_IN, WIDTH, method=method, rngs=nnx.Rngs(0))
  except ValueError as e:
    if "HamiltonianRNN.method" not in str(e):
      raise
    return False
  return True


class TransformationsTest(absltest.TestCase):

  def test_jit_agrees_with_eager(self):
    # (A chex.variants pair would add an eager-against-eager variant that cannot fail.)
    graphdef, state = nnx.split(Stack("rhel_centered", 1e-5))
    x, y = _data(30)
    grad = jax.grad(_loss_fn(graphdef))
    # Fused (jit) and eager arithmetic round differently and the echo divides that by eps = 1e-5,
    # so compare each tensor as a whole (relative to its norm), not element by element.
    got, want = _leaves(jax.jit(grad)(state, x, y)), _leaves(grad(state, x, y))
    self.assertEqual(got.keys(), want.keys())
    for name in want:
      self.assertLess(rel_error(got[name], want[name]), 1e-7, name)

  def test_unroll_changes_only_round_off(self):
    for method in ("bptt", "rhel_centered"):
      want = _leaves(_grads(method, 1e-5, 30))
      got = _leaves(_grads(method, 1e-5, 30, unroll=4))
      for name in want:
        self.assertLess(rel_error(got[name], want[name]), 1e-8, f"{method}: {name}")

  def test_grad_of_jit_equals_jit_of_grad(self):
    graphdef, state = nnx.split(Stack("rhel", 1e-6))
    x, y = _data(30)
    loss = _loss_fn(graphdef)
    chex.assert_trees_all_close(jax.grad(jax.jit(loss))(state, x, y), jax.jit(jax.grad(loss))(state, x, y),
                                rtol=1e-10)

  def test_vmap_over_seeds_equals_separate_calls(self):
    graphdef, _ = nnx.split(Stack("rhel_centered", 1e-5))
    states = [nnx.split(Stack("rhel_centered", 1e-5, seed=s))[1] for s in range(3)]
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *states)
    x, y = _data(30)
    batched = jax.jit(jax.vmap(jax.grad(_loss_fn(graphdef)), in_axes=(0, None, None)))(stacked, x, y)
    one_seed = jax.jit(jax.grad(_loss_fn(graphdef)))  # compiled once for the three separate calls
    for s, state in enumerate(states):
      chex.assert_trees_all_close(jax.tree.map(lambda v: v[s], batched), one_seed(state, x, y),
                                  rtol=1e-10, atol=1e-14)


class BadInputTest(parameterized.TestCase):

  @parameterized.parameters(
      (dict(in_features=0), "in_features"), (dict(hidden_features=2.5), "hidden_features"),
      (dict(method="eprop"), "method"), (dict(eps=0.0), "eps"), (dict(eps=-1e-3), "eps"),
      (dict(dt=-0.1), "dt"), (dict(beta=0.0), "beta"), (dict(exact_reversible=1), "exact_reversible"),
      (dict(grid_bits=30), "grid_bits"), (dict(unroll=0), "unroll"))
  def test_constructor_names_the_attribute(self, kwargs, field):
    args = {"in_features": 3, "hidden_features": 4, **kwargs}
    with self.assertRaisesRegex(ValueError, f"HamiltonianRNN.*{field}"):
      HamiltonianRNN(args.pop("in_features"), args.pop("hidden_features"), rngs=nnx.Rngs(0), **args)

  def test_call_checks_rank_and_width(self):
    layer = HamiltonianRNN(3, 4, rngs=nnx.Rngs(0))
    with self.assertRaisesRegex(ValueError, r"HamiltonianRNN.*\(batch, T, in_features=3\)"):
      layer(jnp.zeros((5, 3)))
    with self.assertRaisesRegex(ValueError, "HamiltonianRNN.in_features=3"):
      layer(jnp.zeros((2, 5, 4)))


if __name__ == "__main__":
  absltest.main()

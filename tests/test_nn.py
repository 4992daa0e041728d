"""rhel_jax.nn.HamiltonianRNN: jax.grad through stacked layers runs the echo and equals BPTT."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import nnx

from rhel_jax.nn import HamiltonianRNN
from tests.helpers import cosine, rel_error

N_IN, WIDTH, N_OUT = 3, 12, 2


class Stack(nnx.Module):
  """encoder -> two HamiltonianRNN layers -> nonlinear head: a model a user would write."""

  def __init__(self, method, eps, seed=0, dtype=jnp.float64):
    rngs = nnx.Rngs(seed)
    self.encoder = nnx.Linear(N_IN, 5, param_dtype=dtype, rngs=rngs)
    # Init scale 0.3: gradients stay O(1-100) at T=1000 (at 0.5 they reach ~1e4, the edge of chaos,
    # where eps must shrink with them).
    kw = dict(method=method, eps=eps, param_dtype=dtype, w_scale=0.3, in_scale=0.3, rngs=rngs)
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


def _grads(method, eps, steps, seed=0):
  graphdef, state = nnx.split(Stack(method, eps, seed))
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
      (dict(dt=-0.1), "dt"), (dict(beta=0.0), "beta"), (dict(exact_reversible=True), "exact_reversible"))
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

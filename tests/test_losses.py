"""Classification losses: pooled logits against a per-sequence loop, any mask (not only padded
tails), the HD task's pooling option, and RHEL = BPTT through each pooling."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

import rhel_jax
from data.hd_loader import HDArrays
from experiments.tasks.heidelberg_digits import HeidelbergDigits
from rhel_jax import losses
from tests.helpers import assert_tree_rel_close, make_problem


def _reference_pool(ys, mask, pooling):
  out = []
  for y, m in zip(np.asarray(ys), np.asarray(mask)):
    valid = y[m > 0]
    if pooling == "mean":  # mask-weighted
      out.append((m[m > 0, None] * valid).sum(0) / m.sum())
    elif pooling == "max":
      out.append(valid.max(0))
    elif pooling == "lse":
      out.append(np.log(np.mean(np.exp(valid.astype(np.float64)), 0)))
    else:
      out.append(valid[-1])
  return np.stack(out)


class PooledLogitsTest(parameterized.TestCase):

  @parameterized.parameters(*losses.POOLINGS)
  def test_equals_a_per_sequence_loop(self, pooling):
    k_y, k_m = jax.random.split(jax.random.key(0))
    ys = jax.random.normal(k_y, (5, 9, 3))
    mask = jax.random.bernoulli(k_m, 0.5, (5, 9)).astype(jnp.float32).at[:, 0].set(1.0)  # gaps anywhere
    mask = mask.at[1].set(0.0).at[1, 4].set(1.0)  # a single valid step in the middle
    got = losses.pooled_logits(ys, mask, pooling)
    np.testing.assert_allclose(got, _reference_pool(ys, mask, pooling), rtol=1e-6)
    targets = jnp.arange(5) % 3
    expected = np.mean(optax.softmax_cross_entropy_with_integer_labels(got, targets))
    np.testing.assert_allclose(losses.LOSSES[f"ce_{pooling}"](ys, targets, mask), expected, rtol=1e-6)

  def test_max_and_last_ignore_padded_steps(self):
    ys = jnp.zeros((1, 4, 2)).at[0, 3].set(100.0)  # a huge logit on the padded step only
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    for pooling in ("max", "last", "lse"):
      np.testing.assert_array_equal(losses.pooled_logits(ys, mask, pooling), jnp.zeros((1, 2)))

  def test_lse_lies_between_the_mean_and_the_max(self):
    ys = 30.0 * jax.random.normal(jax.random.key(2), (4, 7, 3))  # large logits: no overflow either
    mask = jnp.ones((4, 7)).at[:, 5:].set(0.0)
    lse = losses.pooled_logits(ys, mask, "lse")
    self.assertTrue(np.all(np.isfinite(lse)))
    self.assertTrue(np.all(lse >= losses.pooled_logits(ys, mask, "mean") - 1e-4))
    self.assertTrue(np.all(lse <= losses.pooled_logits(ys, mask, "max") + 1e-4))

  def test_unknown_pooling_is_refused(self):
    with self.assertRaisesRegex(ValueError, "pooling: unknown 'median'"):
      losses.pooled_logits(jnp.zeros((1, 2, 2)), jnp.ones((1, 2)), "median")


class RhelThroughPoolingTest(parameterized.TestCase):

  @parameterized.parameters("ce_max", "ce_last", "ce_lse")
  def test_centered_equals_bptt_in_float64(self, loss):
    params, model, inputs, targets, mask = make_problem(loss)
    loss_ref, ref = rhel_jax.gradient("bptt", params, model, inputs, targets, mask, loss=loss)
    value, grads = rhel_jax.gradient("rhel_centered", params, model, inputs, targets, mask, loss=loss, eps=1e-5)
    np.testing.assert_allclose(value, loss_ref, rtol=1e-12)
    assert_tree_rel_close(self, grads, ref, 1e-6, f"rhel_centered/{loss}")

  def test_centered_equals_bptt_through_label_smoothing(self):
    params, model, inputs, targets, mask = make_problem("ce_max")
    loss = losses.classification_loss("max", label_smoothing=0.2)
    _, ref = rhel_jax.gradient("bptt", params, model, inputs, targets, mask, loss=loss)
    _, grads = rhel_jax.gradient("rhel_centered", params, model, inputs, targets, mask, loss=loss, eps=1e-5)
    assert_tree_rel_close(self, grads, ref, 1e-6, "rhel_centered/ce_max smoothed")

  def test_bad_targets_name_the_loss(self):
    params, model, inputs, targets, mask = make_problem("ce_max")
    with self.assertRaisesRegex(ValueError, "targets: loss 'ce_max' expects integer class ids"):
      rhel_jax.gradient("bptt", params, model, inputs, targets.astype(jnp.float64), mask, loss="ce_max")
    with self.assertRaisesRegex(ValueError, "mask: loss 'ce_last' needs at least one valid step"):
      rhel_jax.gradient("bptt", params, model, inputs, targets, mask.at[0].set(0.0), loss="ce_last")


class TaskPoolingTest(absltest.TestCase):

  def _task(self, pooling, label_smoothing=0.0):
    rng = np.random.default_rng(0)
    split = lambda n: HDArrays(rng.normal(size=(n, 6, 4)).astype(np.float32), np.ones((n, 6), np.float32),
                               rng.integers(0, 3, n).astype(np.int32), np.zeros(n, np.int32))
    return HeidelbergDigits({"train": split(8), "test": split(4)}, batch_size=4, probe_size=4, n_out=3,
                            pooling=pooling, label_smoothing=label_smoothing)

  def test_the_task_scores_and_names_its_loss_by_its_pooling(self):
    ys = jax.random.normal(jax.random.key(1), (4, 6, 3))
    labels, mask = jnp.array([0, 1, 2, 0]), jnp.ones((4, 6)).at[0, 3:].set(0.0)
    for pooling in losses.POOLINGS:
      task = self._task(pooling)
      self.assertIs(task.loss, losses.LOSSES[f"ce_{pooling}"])
      metrics = task.metrics(ys, labels, mask)
      logits = _reference_pool(ys, mask, pooling)
      self.assertAlmostEqual(float(metrics["accuracy"]), float(np.mean(logits.argmax(-1) == labels)))
      np.testing.assert_allclose(metrics["loss"], task.loss(ys, labels, mask), rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "config.task.pooling: unknown 'median'"):
      self._task("median")

  def test_label_smoothing_trains_on_smoothed_targets_and_reports_the_plain_loss(self):
    ys = jax.random.normal(jax.random.key(2), (4, 6, 3))
    labels, mask = jnp.array([0, 1, 2, 0]), jnp.ones((4, 6)).at[1, 2:].set(0.0)
    task = self._task("max", label_smoothing=0.3)
    log_p = jax.nn.log_softmax(_reference_pool(ys, mask, "max"))
    # target: 0.7 on the class plus 0.3 spread evenly over the 3 classes
    want = -np.mean(0.7 * log_p[np.arange(4), labels] + 0.3 * np.mean(log_p, -1))
    np.testing.assert_allclose(task.loss(ys, labels, mask), want, rtol=1e-6)
    np.testing.assert_allclose(task.metrics(ys, labels, mask)["loss"], losses.ce_max(ys, labels, mask), rtol=1e-6)
    for bad in (-0.1, 1.0, True, float("nan")):
      with self.assertRaisesRegex(ValueError, "label_smoothing must be a number in"):
        losses.classification_loss("max", bad)


if __name__ == "__main__":
  absltest.main()

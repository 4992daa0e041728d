"""Copy-Paste recipe pieces: spectral init, the delay curriculum, per-step recall accuracy."""
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

import rhel_jax
from experiments import checkpoints, train
from experiments.tasks.copy_paste import CopyPaste, CopyTask, metrics
from tests.test_experiments import tiny_config


class SpectralInitTest(parameterized.TestCase):

  @parameterized.parameters((1.0, 1.0, 0.1, 3.0), (0.5, 2.0, 0.8, 1.2), (2.0, 0.5, 0.05, 0.06))
  def test_linearised_frequencies_lie_in_the_range(self, alpha, beta, lo, hi):
    w = np.asarray(rhel_jax.spectral_weights(jax.random.key(3), 48, alpha=alpha, beta=beta, omega_min=lo,
                                             omega_max=hi, dtype=jnp.float32), np.float64)
    np.testing.assert_array_equal(w, w.T)
    omega = np.sqrt(np.linalg.eigvalsh(alpha * np.eye(48) + w / beta))
    self.assertGreaterEqual(omega.min(), lo * (1 - 1e-4))
    self.assertLessEqual(omega.max(), hi * (1 + 1e-4))
    self.assertGreater(omega.max() - omega.min(), 0.5 * (hi - lo))  # spread, not one frequency

  def test_a_mode_oscillates_at_its_frequency(self):
    # Linear network (identity rho, no bias, no input): an eigenvector started at rest oscillates at
    # the leapfrog's discrete frequency theta, cos(theta) = 1 - (h omega)^2 / 2, and stays a mode.
    n, h = 16, 0.5
    w = rhel_jax.spectral_weights(jax.random.key(0), n, alpha=1.0, beta=1.0, omega_min=0.3, omega_max=2.0)
    omega2, vecs = np.linalg.eigh(np.eye(n) + np.asarray(w, np.float64))
    q = jnp.asarray(vecs[:, 5], jnp.float32)
    params = {"W": w, "b": jnp.zeros(n), "B": jnp.zeros((1, n)), "W_out": jnp.zeros((1, n)), "b_out": jnp.zeros(1)}
    model = rhel_jax.ModelConfig(dt=h, rho="identity")
    theta = np.arccos(1 - (h * h * omega2[5]) / 2)  # radians per step
    phis = []
    state = rhel_jax.State(q[None], jnp.zeros((1, n)))
    for _ in range(200):
      state, _ = rhel_jax.leapfrog_step(params, model, state, jnp.zeros((1, 1)))
      phis.append(float(state.phi[0] @ q))
    spectrum = np.abs(np.fft.rfft(np.asarray(phis) * np.hanning(200), 4096))
    peak = np.argmax(spectrum) * 2 * np.pi / 4096
    self.assertAlmostEqual(peak, theta, delta=2 * 2 * np.pi / 4096)
    np.testing.assert_allclose(state.phi[0], (state.phi[0] @ q) * q, atol=1e-5)

  def test_bad_range_is_refused(self):
    with self.assertRaisesRegex(ValueError, "omega_min"):
      rhel_jax.spectral_weights(jax.random.key(0), 4, alpha=1.0, beta=1.0, omega_min=2.0, omega_max=1.0)

  def test_gaussian_init_is_unchanged_by_the_option(self):
    a = rhel_jax.init_params(jax.random.key(1), 4, 8, 3, w_scale=0.3)
    b = rhel_jax.init_params(jax.random.key(1), 4, 8, 3, w_scale=0.3, spectrum=(1.0, 1.0, 0.1, 3.0))
    for k in ("b", "B", "W_out", "b_out"):
      np.testing.assert_array_equal(a[k], b[k])
    self.assertFalse(np.array_equal(a["W"], b["W"]))


class CurriculumTest(absltest.TestCase):

  def test_stages_yield_the_configured_lengths(self):
    config = tiny_config(**{"task.seq_len": 40, "task.curriculum": (20, 30), "task.curriculum_stage_epochs": 2})
    task = CopyPaste.from_config(config, jnp.float32)
    self.assertEqual([task.train_seq_len(e) for e in range(7)], [20, 20, 30, 30, 40, 40, 40])
    key = jax.random.key(0)
    for seq_len in (20, 30, 40):
      inputs, targets, mask = task.train_batch(task.train_data(), key, 3, seq_len)
      self.assertEqual(inputs.shape, (config.batch_size, seq_len, 4))
      self.assertEqual(mask.shape, (config.batch_size, seq_len))
      # Pattern first, recall window last: the delay is what the curriculum shortens.
      window = task.task.window
      np.testing.assert_array_equal(targets[:, -window:], inputs[:, :window, :3])
      self.assertEqual(float(mask[0].sum()), window)
    # The test set keeps the full length.
    self.assertEqual(task.test_set(key)[0].shape[1], 40)

  def test_off_by_default(self):
    task = CopyPaste.from_config(tiny_config(), jnp.float32)
    self.assertEqual({task.train_seq_len(e) for e in range(50)}, {task.seq_len})

  def test_training_runs_each_stage_and_logs_its_length(self):
    with tempfile.TemporaryDirectory() as d:
      config = tiny_config(**{"task.curriculum": (22,), "task.curriculum_stage_epochs": 2, "methods": ("bptt",),
                              "alignment_epochs": ()})
      train.run_experiment(config, d)
      rows = checkpoints.read_jsonl(pathlib.Path(d) / "bptt" / "metrics.jsonl")
      self.assertEqual([r["train_seq_len"] for r in rows if r["seed"] == 0], [22, 22, 24])

  def test_bad_curriculum_names_the_field(self):
    for value in ((5,), (30, 100), (20.5,)):
      with self.assertRaisesRegex(ValueError, "config.task.curriculum"):
        train.validate_config(tiny_config(**{"task.curriculum": value}))
    with self.assertRaisesRegex(ValueError, "config.model.omega_max"):
      train.validate_config(tiny_config(**{"model.w_init": "spectral", "model.omega_max": 5.0}))


class OptimizerTest(absltest.TestCase):

  def test_lr_scale_scales_exactly_the_named_tensors_updates(self):
    params = {"W": jnp.ones((3, 3)), "b": jnp.ones(3), "B": jnp.ones((2, 3)), "W_out": jnp.ones((2, 3)),
              "b_out": jnp.ones(2)}
    grads = {"W": jnp.full((3, 3), 0.3), "b": jnp.full(3, -0.2), "B": jnp.full((2, 3), 0.1),
             "W_out": jnp.full((2, 3), 0.05), "b_out": jnp.full(2, -0.4)}
    def updates(**scales):
      config = tiny_config(**{f"train.lr_scale.{k}": v for k, v in scales.items()})
      opt = train.make_optimizer(config.train, 100)
      state = opt.init(params)
      for _ in range(3):
        out, state = opt.update(grads, state, params)
      return out
    base = updates()
    for scales in ({"W": 0.1}, {"B": 0.03, "b": 0.3}, {"W_out": 2.0, "W": 0.01, "b_out": 0.0}):
      scaled = updates(**scales)
      for k in params:
        if k in scales:  # x a multiplier is one rounding away from the unscaled update
          np.testing.assert_allclose(scaled[k], scales[k] * base[k], rtol=1e-6, err_msg=k)
          self.assertFalse(np.array_equal(scaled[k], base[k]) and scales[k] != 1, k)
        else:
          np.testing.assert_array_equal(scaled[k], base[k], err_msg=k)

  def test_lr_scale_rejects_unknown_tensors_and_negative_values(self):
    config = tiny_config()
    config.train.lr_scale.B = -0.1
    with self.assertRaisesRegex(ValueError, r"config\.train\.lr_scale\.B"):
      train.validate_config(config)
    config = tiny_config()
    with config.train.lr_scale.unlocked():
      config.train.lr_scale.V = 0.5
    with self.assertRaisesRegex(ValueError, r"config\.train\.lr_scale: unknown tensor\(s\) \['V'\]"):
      train.validate_config(config)

  def test_weight_decay_shrinks_the_matrices_alone_and_zero_is_plain_adam(self):
    params = {"W": jnp.ones((3, 3)), "b": jnp.ones(3), "B": jnp.ones((2, 3)), "W_out": jnp.ones((2, 3)),
              "b_out": jnp.ones(2)}
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    def first_update(**overrides):
      opt = train.make_optimizer(tiny_config(**overrides).train, 100)
      return opt.update(grads, opt.init(params), params)[0]
    lr, wd = tiny_config().train.lr, 0.5
    plain, adam = first_update(), optax.adam(lr)
    expected = adam.update(grads, adam.init(params), params)[0]
    for k in params:  # the clipping (norm 1) is inactive: the gradients' norm is 0.51
      np.testing.assert_array_equal(plain[k], expected[k])
    decayed = first_update(**{"train.weight_decay": wd})
    for k in params:
      shrink = lr * wd * params[k] if k in ("W", "B", "W_out") else 0.0
      np.testing.assert_allclose(decayed[k], plain[k] - shrink, rtol=1e-6, err_msg=k)
    frozen = first_update(**{"train.weight_decay": wd, "train.frozen_params": ("B",)})
    np.testing.assert_array_equal(frozen["B"], plain["B"])  # a frozen tensor is not decayed
    with self.assertRaisesRegex(ValueError, "config.train.weight_decay"):
      train.validate_config(tiny_config(**{"train.weight_decay": -1.0}))

  def test_warmup_longer_than_the_run_names_the_field(self):
    config = tiny_config(**{"train.schedule": "warmup_cosine", "train.warmup_steps": 500})
    with self.assertRaisesRegex(ValueError, "config.train.warmup_steps=500"):
      train.make_optimizer(config.train, 100)


class RecallByStepTest(absltest.TestCase):

  def test_per_step_accuracy_on_a_hand_made_batch(self):
    task = CopyTask(num_bits=2, pattern_length=2, steps_per_symbol=1, marker_steps=1, seq_len=8)
    _, targets, mask = task.sample(jax.random.key(0), 4)
    ys = jnp.where(targets > 0.5, 1.0, -1.0)       # perfect logits ...
    ys = ys.at[:, -2, :].multiply(-1.0)             # ... except every bit of recall step 1 is wrong
    ys = ys.at[:2, -1, 0].multiply(-1.0)            # and bit 0 of step 2 in half the sequences
    out = metrics(ys, targets, mask, window=task.window)
    np.testing.assert_allclose(out["acc_by_step"], [0.0, 0.75])
    np.testing.assert_allclose(out["bit_acc"], (0 + 0.75) / 2)
    self.assertEqual(float(out["pattern_acc"]), 0.0)
    self.assertNotIn("acc_by_step", metrics(ys, targets, mask))


if __name__ == "__main__":
  absltest.main()

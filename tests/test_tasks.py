"""The task registry: a new task is one class plus one registry entry, and the whole pipeline
(config checks, training, results.md, the report) runs it with no other change."""
import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from experiments import base_config, report, tasks, train
from experiments.schema import Field, Int
from experiments.tasks.copy_paste import CopyPaste
from experiments.tasks.heidelberg_digits import HeidelbergDigits
from rhel_jax import losses


class SignOfSum(tasks.Task):
  """Tiny synthetic task (test only): the sign of the running sum of a noise input, at every step.

  Its training data is a fixed pool of sequences passed to ``train_batch`` as an argument, so it
  also checks that path of the interface."""
  name = "test_sign_of_sum"
  loss = "bce"
  primary_metric = "acc"
  summary_metrics = ("acc",)
  fraction_metrics = ("acc",)
  # Its own config fields: declared here, they are in its config and checked like any other.
  config_fields = (Field("task.seq_len", 12, Int(1)), Field("task.pool", 64, Int(1), "training sequences"))

  @classmethod
  def check_relations(cls, config):
    if config.task.pool < config.batch_size:
      raise ValueError(f"config.task.pool={config.task.pool} is below config.batch_size={config.batch_size}")

  @classmethod
  def from_config(cls, config, dtype):
    return cls(config.task.seq_len, config.task.pool, config.batch_size, config.alignment_batch_size,
               config.steps_per_epoch, dtype)

  def __init__(self, seq_len, pool, batch_size, probe_size, steps_per_epoch, dtype):
    self.n_in, self.n_out, self.seq_len = 1, 1, seq_len
    self.batch_size, self.probe_size, self.steps_per_epoch, self.dtype = batch_size, probe_size, steps_per_epoch, dtype
    self.pool = self._make(jax.random.key(123), pool)

  def _make(self, key, n):
    x = jax.random.normal(key, (n, self.seq_len, 1), self.dtype)
    return x, (jnp.cumsum(x, 1) > 0).astype(self.dtype), jnp.ones((n, self.seq_len), self.dtype)

  def train_data(self):
    return self.pool

  def train_batch(self, data, key, step, seq_len=None):
    idx = jax.random.choice(jax.random.fold_in(key, step), data[0].shape[0], (self.batch_size,))
    return tuple(a[idx] for a in data)

  def test_set(self, key):
    return self._make(key, 32)

  def probe_batch(self, key):
    return self._make(key, self.probe_size)

  def metrics(self, ys, targets, mask):
    return {"acc": jnp.mean((ys > 0) == (targets > 0.5)), "loss": losses.bce(ys, targets, mask)}


class SignOfSumWithValidation(SignOfSum):
  """The same task with a held-out validation set, so the trainer also picks an epoch on it."""
  name = "test_sign_of_sum_val"

  def validation_set(self, key):
    return self._make(jax.random.fold_in(key, 1), 32)


def sign_config():
  return base_config.get_config(SignOfSum.name, {
      "methods": ("bptt", "rhel_centered"), "num_seeds": 2, "num_epochs": 3, "steps_per_epoch": 5,
      "batch_size": 8, "alignment_batch_size": 8, "alignment_epochs": (0, 2), "checkpoint_every": 1,
      "model.num_hidden": 8}, name="sign_of_sum")


class TaskRegistryTest(absltest.TestCase):

  def setUp(self):
    tasks.register(SignOfSum)
    self.addCleanup(tasks.unregister, SignOfSum.name)
    d = tempfile.TemporaryDirectory()
    self.addCleanup(d.cleanup)
    self.workdir = pathlib.Path(d.name) / "run"

  def test_the_builtin_tasks_are_registered(self):
    self.assertIs(tasks.get("copy_paste"), CopyPaste)
    self.assertIs(tasks.get("heidelberg_digits"), HeidelbergDigits)
    with self.assertRaisesRegex(ValueError, "config.task.name: unknown task 'nope'"):
      tasks.get("nope")
    with self.assertRaisesRegex(ValueError, "already registered"):
      tasks.register(CopyPaste)

  def test_a_registered_task_runs_through_training_and_the_report(self):
    rows = train.run_experiment(sign_config(), self.workdir)
    self.assertEqual([r["method"] for r in rows], ["bptt", "rhel_centered"])
    final = json.loads((self.workdir / "bptt" / "final.json").read_text())
    self.assertEqual(len(final["test_acc"]), 2)
    self.assertTrue(all(0.0 <= a <= 1.0 for a in final["test_acc"]))
    text = (self.workdir / "results.md").read_text()
    self.assertIn("| method | acc (%) | seeds | diverged | wall time |", text)
    markdown, _ = report.table1(report.merge_runs([report.load_run(self.workdir)]))
    self.assertIn("test_sign_of_sum (ours)", markdown)
    # A fixed pool passed as data: the same step key gives the same batch.
    task = SignOfSum.from_config(sign_config(), jnp.float32)
    a = task.train_batch(task.train_data(), jax.random.key(0), 3)
    b = task.train_batch(task.train_data(), jax.random.key(0), 3)
    np.testing.assert_array_equal(a[0], b[0])

  def test_a_validation_set_selects_an_epoch_beside_the_last(self):
    tasks.register(SignOfSumWithValidation)
    self.addCleanup(tasks.unregister, SignOfSumWithValidation.name)
    config = sign_config()
    config.task.name, config.methods, config.num_epochs = SignOfSumWithValidation.name, ("bptt",), 4
    train.run_experiment(config, self.workdir)
    final = json.loads((self.workdir / "bptt" / "final.json").read_text())
    rows = [json.loads(l) for l in (self.workdir / "bptt" / "metrics.jsonl").read_text().splitlines()]
    self.assertLen(rows, 2 * 4)
    for seed in range(2):
      mine = [r for r in rows if r["seed"] == seed]
      best = final["best_val_epoch"][seed]
      self.assertEqual(final["val_acc"][seed], max(r["val_acc"] for r in mine))
      self.assertEqual(final["test_acc_at_best_val"][seed], mine[best]["test_acc"])
      self.assertEqual(final["test_acc"][seed], mine[-1]["test_acc"])  # the last epoch stays the headline
    self.assertIn("| acc (%) | acc at the best validation epoch (%) |", (self.workdir / "results.md").read_text())

  def test_best_on_validation_breaks_ties_by_loss_then_epoch(self):
    from experiments.summary import best_on_validation
    row = lambda epoch, seed, acc, loss, test: {"epoch": epoch, "seed": seed, "val_acc": acc, "val_loss": loss,
                                                 "test_acc": test, "test_acc_by_step": [0.0]}
    rows = [row(0, 0, 0.5, 1.0, 0.1), row(1, 0, 0.8, 0.9, 0.2), row(2, 0, 0.8, 0.7, 0.3), row(3, 0, 0.7, 0.1, 0.4),
            row(0, 1, 0.6, 1.0, 0.5), row(1, 1, 0.6, 1.0, 0.6)]
    got = best_on_validation(rows, "acc", 2)
    self.assertEqual(got["best_val_epoch"], [2, 0])
    self.assertEqual(got["test_acc_at_best_val"], [0.3, 0.5])
    self.assertNotIn("test_acc_by_step_at_best_val", got)
    with self.assertRaisesRegex(ValueError, "no rows for seed 2"):
      best_on_validation(rows, "acc", 3)

  def test_the_report_code_knows_tasks_only_through_the_interface(self):
    # No task's name, display name or metric key in the code that summarises and reports runs.
    words = {"Copy-Paste", "Heidelberg"}
    for task in (CopyPaste, HeidelbergDigits):
      words.add(task.name)
      for metric in {task.primary_metric, task.per_step_metric, *task.summary_metrics, *task.fraction_metrics} - {None}:
        words |= {f'"{metric}"', f"'{metric}'", f"test_{metric}"}
    root = pathlib.Path(__file__).parents[1] / "experiments"
    for module in ("report.py", "summary.py", "probe_table.py"):
      source = (root / module).read_text()
      self.assertEqual(sorted(w for w in words if w in source), [], module)

  def test_its_config_checks_run_and_name_the_field(self):
    config = sign_config()
    self.assertEqual((config.task.name, config.task.seq_len, config.task.pool), (SignOfSum.name, 12, 64))
    config.task.pool = 0  # its field's declared check
    with self.assertRaisesRegex(ValueError, r"config\.task\.pool must be an int >= 1, got 0"):
      train.run_experiment(config, self.workdir)
    config.task.pool = 4  # its own check across fields
    with self.assertRaisesRegex(ValueError, r"config\.task\.pool=4 is below config\.batch_size=8"):
      train.run_experiment(config, self.workdir)
    config.task.pool_size = 64  # a key no declaration names
    with self.assertRaisesRegex(ValueError, r"config\.task: unknown field\(s\) \['pool_size'\]"):
      train.run_experiment(config, self.workdir)


if __name__ == "__main__":
  absltest.main()

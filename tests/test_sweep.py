"""Vmapped hyperparameter sweeps: a sweep gives each setting the numbers of the separate run it
replaces, keeps the settings' outputs apart, and refuses bad sweep fields by name."""
import json
import pathlib
import shutil

from absl.testing import absltest, parameterized
import ml_collections
import numpy as np

from experiments import probe_table, recipes, sweep, train
from tests.test_experiments import _TempDirs, tiny_config


def _rows(path: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_numbers(test, a, b, where):
  """Same keys and structure; numbers equal to float32 round-off, everything else exactly."""
  test.assertEqual(type(a), type(b), where)
  if isinstance(a, dict):
    test.assertEqual(sorted(a), sorted(b), where)
    for k in a:
      _assert_same_numbers(test, a[k], b[k], f"{where}.{k}")
  elif isinstance(a, list):
    test.assertEqual(len(a), len(b), where)
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_same_numbers(test, x, y, f"{where}[{i}]")
  elif isinstance(a, float):
    # A constant hyperparameter is folded into the compiled update, a swept one is an operand, and
    # the replica count changes XLA's batched kernels: ulp-level differences, no more.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=where)
  else:
    test.assertEqual(a, b, where)


class SweepTest(_TempDirs, parameterized.TestCase):

  def test_a_sweep_equals_the_separate_runs_it_replaces(self):
    grid = {"train.lr": (3e-3, 1e-3), "train.lr_scale.B": (0.1,), "method.eps": (1e-3,)}
    config = tiny_config(methods=("rhel", "bptt"), num_epochs=2, alignment_epochs=(0, 1))
    config.sweep = grid
    swept = pathlib.Path(self.tmp())
    rows = train.run_experiment(config, swept)
    labels = [s.label for s in sweep.settings(config)]
    self.assertEqual(labels, ["lr=0.003_lr_scale.B=0.1_method.eps=0.001", "lr=0.001_lr_scale.B=0.1_method.eps=0.001"])
    self.assertEqual(sorted((r["setting"], r["method"]) for r in rows), sorted(
        (label, m) for label in labels for m in ("rhel", "bptt")))
    finals = {}
    for lr, label in zip(grid["train.lr"], labels):
      separate = pathlib.Path(self.tmp())
      alone = tiny_config(methods=("rhel", "bptt"), num_epochs=2, alignment_epochs=(0, 1),
                          **{"train.lr": lr, "train.lr_scale.B": 0.1, "method.eps": 1e-3})
      train.run_experiment(alone, separate)
      mine = swept / "settings" / label
      self.assertEqual(json.loads((mine / "config.json").read_text()),
                       json.loads((separate / "config.json").read_text()))
      for method in ("rhel", "bptt"):
        for name in ("metrics.jsonl", "alignment.jsonl"):
          _assert_same_numbers(self, _rows(mine / method / name), _rows(separate / method / name),
                               f"{label}/{method}/{name}")
        finals[label] = json.loads((mine / method / "final.json").read_text())
        _assert_same_numbers(self, finals[label], json.loads((separate / method / "final.json").read_text()),
                             f"{label}/{method}/final.json")
    # The settings really differ (a sweep that trained one setting twice would pass the rest).
    self.assertNotEqual(finals[labels[0]]["test_loss"], finals[labels[1]]["test_loss"])
    # Each setting is a run directory the probe table reads.
    probes = [p for d in sorted((swept / "settings").iterdir()) for p in probe_table.load_probe(d)]
    self.assertEqual(len(probes), 4)

  def test_a_sweep_resumes_from_its_checkpoint(self):
    config = tiny_config(methods=("rhel",), num_epochs=2, alignment_epochs=(0,))
    config.sweep = {"train.lr": (3e-3, 1e-3)}
    straight, resumed = pathlib.Path(self.tmp()), pathlib.Path(self.tmp())
    train.run_experiment(config, straight)
    train.run_experiment(config, resumed)
    # Drop the last epoch's checkpoint and rows, as a stop after epoch 1 leaves them.
    for path in (resumed / "rhel").glob("checkpoint_2*"):  # an Orbax directory (a msgpack file before)
      shutil.rmtree(path) if path.is_dir() else path.unlink()
    train.run_experiment(config, resumed)
    for label in ("lr=0.003", "lr=0.001"):
      for name in ("metrics.jsonl", "final.json"):
        a = (straight / "settings" / label / "rhel" / name).read_text()
        b = (resumed / "settings" / label / "rhel" / name).read_text()
        self.assertEqual(a, b, f"{label}/{name}")

  @parameterized.parameters(
      ({"model.num_hidden": (8, 16)}, r"config\.sweep\['model\.num_hidden'\]: not a sweepable field"),
      ({"train.lr": ()}, r"config\.sweep\['train\.lr'\] must be a non-empty tuple"),
      ({"train.lr": (1e-3, "x")}, r"config\.sweep\['train\.lr'\]: 'x' is not a finite number"),
      ({"train.lr": (1e-3, float("nan"))}, r"config\.sweep\['train\.lr'\]: nan is not a finite number"),
      ({"train.lr": (1e-3, -1e-3)}, r"config\.sweep: setting lr=-0\.001: config\.train\.lr must be a number > 0"),
      ({"train.lr_scale.V": (1.0,)}, r"config\.sweep\['train\.lr_scale\.V'\]: not a sweepable field"),
      ({"train.clip_norm": (1.0, 0.0)}, r"config\.sweep\['train\.clip_norm'\]: 0\.0; a swept clip norm must be > 0"),
      ({"method.eps": (0.0,)}, r"config\.sweep: setting method\.eps=0: config\.method\.eps must be a number > 0"),
      ("lr=1e-3", r"config\.sweep must be a dict"),
  )
  def test_bad_sweeps_are_refused_by_name(self, grid, message):
    config = tiny_config()
    config.sweep = grid
    with self.assertRaisesRegex(ValueError, message):
      train.validate_config(config)



class RecipeTest(_TempDirs, parameterized.TestCase):

  def test_a_method_trains_with_its_recipe_and_the_others_with_the_shared_one(self):
    config = tiny_config(methods=("bptt", "eprop"), num_epochs=2, alignment_epochs=())
    config.recipes.eprop = ml_collections.ConfigDict({"train": {"lr": 1e-3, "lr_scale": {"B": 0.1}}})
    both = pathlib.Path(self.tmp())
    train.run_experiment(config, both)
    # Each row equals the run of that method alone at the recipe it names.
    for method, overrides in (("bptt", {}), ("eprop", {"train.lr": 1e-3, "train.lr_scale.B": 0.1})):
      alone = pathlib.Path(self.tmp())
      train.run_experiment(tiny_config(methods=(method,), num_epochs=2, alignment_epochs=(), **overrides), alone)
      self.assertEqual((both / method / "final.json").read_text(), (alone / method / "final.json").read_text(),
                       method)
    text = (both / "results.md").read_text()
    self.assertIn("- eprop's own recipe (`config.recipes.eprop`): lr=0.001, lr_scale.B=0.1", text)
    self.assertEqual(recipes.describe(config, "bptt"), "shared")

  def test_a_workdir_from_before_recipes_resumes(self):
    workdir = pathlib.Path(self.tmp())
    config = tiny_config()
    train.prepare_workdir(config, workdir, overwrite=False)
    saved = json.loads((workdir / "config.json").read_text())
    del saved["recipes"], saved["sweep"]  # as written before either field existed
    (workdir / "config.json").write_text(json.dumps(saved))
    train.prepare_workdir(config, workdir, overwrite=False)
    config.recipes.eprop = ml_collections.ConfigDict({"train": {"lr": 1e-3}})
    with self.assertRaisesRegex(ValueError, r"different config \(fields \['recipes.eprop'\]"):
      train.prepare_workdir(config, workdir, overwrite=False)

  @parameterized.parameters(
      ({"rnn": {"train": {"lr": 1e-3}}}, r"config\.recipes\.rnn: unknown method"),
      ({"eprop": {"model": {"dt": 0.1}}}, r"config\.recipes\.eprop\.model\.dt: a recipe may set only train, method"),
      ({"eprop": {"train": {"lrr": 1e-3}}}, r"config\.recipes\.eprop\.train\.lrr: no such config field"),
      ({"eprop": {"train": {"lr": -1.0}}}, r"config\.recipes\.eprop: config\.train\.lr must be a number > 0"),
      ({"eprop": {"train": {"lr_scale": {"V": 1.0}}}}, r"config\.recipes\.eprop\.train\.lr_scale\.V: no such"),
  )
  def test_bad_recipes_are_refused_by_name(self, recipe, message):
    config = tiny_config(methods=("bptt", "eprop"))
    config.recipes = ml_collections.ConfigDict(recipe)
    with self.assertRaisesRegex(ValueError, message):
      train.validate_config(config)

  def test_a_sweep_may_not_sweep_a_field_a_recipe_sets(self):
    config = tiny_config(methods=("bptt", "eprop"))
    config.recipes.eprop = ml_collections.ConfigDict({"train": {"lr": 1e-3}})
    config.sweep = {"train.lr": (1e-3, 3e-3)}
    with self.assertRaisesRegex(ValueError, r"config\.sweep sweeps \['train\.lr'\], which config\.recipes\.eprop"):
      train.validate_config(config)


if __name__ == "__main__":
  absltest.main()

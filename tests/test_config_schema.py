"""The config schema: every field is declared once, with a check and a legacy value (or as there since
the first runs); the configs, their validation and the resume of old workdirs follow from the
declarations, and the worked example on the architecture page is the code's."""
import json
import re

import ml_collections
from absl.testing import absltest, parameterized

from data import augment, synth_corpus
from experiments import base_config, copy_paste, hd_data, heidelberg_digits, schema, workdir
from experiments.config_check import validate_config
from rhel_jax import methods
from tools import architecture

TASK_MODULES = {"copy_paste": copy_paste, "heidelberg_digits": heidelberg_digits}
VARIANTS = [(task, v) for task, module in TASK_MODULES.items() for v in module.VARIANTS]


def fields(task):
  return [d for d in base_config.declarations(task) if isinstance(d, schema.Field)]


def with_value(config, path, value) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``path`` set to any value, past the ConfigDict's own type checks (as a
  config built in code, or loaded from JSON, may hold)."""
  plain = config.to_dict()
  *parents, leaf = path.split(".")
  node = plain
  for part in parents:
    node = node[part]
  node[leaf] = value
  return ml_collections.ConfigDict(plain)


def without(tree: dict, path: str) -> dict:
  out = json.loads(json.dumps(tree))
  *parents, leaf = path.split(".")
  node = out
  for part in parents:
    node = node[part]
  del node[leaf]
  return out


class DeclarationsTest(parameterized.TestCase):

  @parameterized.parameters("copy_paste", "heidelberg_digits")
  def test_every_field_has_a_check_that_its_default_and_legacy_value_pass(self, task):
    for f in fields(task):
      self.assertIsInstance(f.check, schema.Check, f.path)
      f.check(f.default, f.path)  # raises naming the field if the declaration contradicts itself
      if f.legacy is not schema.SINCE_START:
        f.check(f.legacy, f.path)

  @parameterized.parameters(*VARIANTS)
  def test_every_variant_is_a_valid_config_of_declared_fields(self, task, variant):
    config = TASK_MODULES[task].get_config(variant)
    validate_config(config)
    declared = {f.path for f in fields(task)}
    resolved = json.loads(config.to_json_best_effort())
    flat = set(_leaf_paths(resolved))
    self.assertEqual(flat - declared, set())  # every value of the config is a declared field
    self.assertEqual({p for p in declared if not any(k == p or k.startswith(p + ".") for k in flat)}, set())

  def test_a_variant_that_sets_no_field_fails_naming_it(self):
    with self.assertRaisesRegex(ValueError, r"config 'x': config\.model\.dtt is not a config field"):
      base_config.get_config("copy_paste", {"model.dtt": 0.1}, name="x")

  @parameterized.parameters(("copy_paste", "tiny"), ("heidelberg_digits", "full"))
  def test_every_field_refuses_a_value_of_the_wrong_kind_naming_it(self, task, variant):
    config = TASK_MODULES[task].get_config(variant)
    for f in fields(task):
      with self.assertRaisesRegex(ValueError, rf"^config\.{re.escape(f.path)}\b", msg=f.path):
        validate_config(with_value(config, f.path, object()))

  @parameterized.parameters(("copy_paste", "tiny"), ("heidelberg_digits", "full"))
  def test_every_numeric_field_refuses_a_non_number_and_nan_naming_it(self, task, variant):
    config = TASK_MODULES[task].get_config(variant)
    numeric = [f for f in fields(task) if schema.is_number(f.default) or f.type in (int, float)]
    self.assertGreater(len(numeric), 20 if task == "copy_paste" else 40)
    for f in numeric:
      for bad in ("1", float("nan"), float("inf"), True):
        with self.assertRaisesRegex(ValueError, rf"^config\.{re.escape(f.path)} must be ", msg=(f.path, bad)):
          validate_config(with_value(config, f.path, bad))

  def test_bounds_are_checked_where_declared(self):
    config = copy_paste.get_config("tiny")
    for path, bad, message in (("num_seeds", 0, "an int >= 1"), ("model.dt", 0.0, "a number > 0"),
                               ("model.grid_bits", 27, r"an int in \[4, 26\]"),
                               ("train.clip_norm", -1.0, "a number >= 0"),
                               ("method.eps", 0.0, r"a number > 0 \(or None\)"), ("method.tbptt_k", 0, "an int >= 1")):
      with self.assertRaisesRegex(ValueError, rf"config\.{re.escape(path)} must be {message}, got {bad!r}"):
        validate_config(with_value(config, path, bad))
    validate_config(with_value(config, "method.eps", None))  # None: the option's default_fn
    hd = heidelberg_digits.get_config("full")
    for path, bad in (("data.augment.time_stretch", 1.0), ("data.standin_pad_ms", 5001.0), ("data.delta_width", 4),
                      ("task.label_smoothing", 1.0), ("data.validation_speaker", -2)):
      with self.assertRaisesRegex(ValueError, rf"^config\.{re.escape(path)} must be "):
        validate_config(with_value(hd, path, bad))

  def test_keys_no_declaration_names_are_refused_naming_the_section(self):
    config = copy_paste.get_config("tiny")
    config.sead = 1
    with self.assertRaisesRegex(ValueError, r"^config: unknown field\(s\) \['sead'\]"):
      validate_config(config)
    config = heidelberg_digits.get_config("full")
    config.data.augment.speed = 0.1
    with self.assertRaisesRegex(ValueError, r"^config\.data\.augment: unknown field\(s\) \['speed'\]"):
      validate_config(config)
    config = copy_paste.get_config("tiny")
    config.task.seq = 3
    with self.assertRaisesRegex(ValueError, r"^config\.task: unknown field\(s\) \['seq'\]"):
      validate_config(config)

  def test_a_field_declared_twice_is_an_error(self):
    twice = (schema.Field("a.b", 1, schema.Int()), schema.Field("a.b", 2, schema.Int()))
    with self.assertRaisesRegex(ValueError, r"config\.a\.b is declared twice"):
      schema.build(twice)
    with self.assertRaisesRegex(ValueError, r"config\.a is declared both as a field and as a section"):
      schema.build((schema.Field("a", 1, schema.Int()), schema.Field("a.b", 1, schema.Int())))


class ResumeTest(parameterized.TestCase):
  """Old workdirs resume as before: a saved config that lacks a field is the run it always was when
  the field is at its legacy value, and a different run otherwise."""

  # The fields added after runs had been started, with the value that reproduces those runs: the
  # table workdirs saved before each field rely on (it was experiments/workdir.py's ADDED_FIELDS and
  # hd_data's FEATURE_DEFAULTS). Changing a value here breaks the resume of such a workdir.
  LEGACY = {"method.eprop_online": True, "method.kernel": "scan", "sweep": {}, "recipes": {}, "train.frozen_params": [],
            **{f"train.lr_scale.{k}": 1.0 for k in ("W", "b", "B", "W_out", "b_out")},
            "task.curriculum": [], "task.curriculum_stage_epochs": 10, "model.w_init": "gaussian",
            "model.omega_min": 0.1, "model.omega_max": 3.0, "task.pooling": "mean", "train.weight_decay": 0.0,
            "model.unroll": None,
            "data.standin_voices": "basic", "data.standin_noise_snr_db": None, "data.standin_reverb_rt60": 0.0,
            "data.standin_pad_ms": 0.0, "data.standin_gain_db": 0.0, "data.require_manual_dir": False,
            "data.num_classes": 20, "data.eval_split": "test", "data.validation_speaker": -1,
            "data.cmvn": "none", "data.deltas": 0, "data.delta_width": 9, "data.trim_db": 0.0,
            "data.f_min": 0.0, "data.f_max": 0.0, "data.top_db": 0.0,
            **{f"data.augment.{k}": 0 if k.endswith(("masks", "width")) else 0.0 for k in augment.FIELDS}}

  def test_the_legacy_values_are_those_old_workdirs_need(self):
    got = {}
    for task in TASK_MODULES:
      got.update({f.path: schema.legacy_value(fields(task), f.path) for f in fields(task)
                  if f.legacy is not schema.SINCE_START})
    self.assertEqual(got, self.LEGACY)
    renamed = {f.renamed_from: f.path for task in TASK_MODULES for f in fields(task) if f.renamed_from}
    self.assertEqual(renamed, {"train.w_lr_scale": "train.lr_scale.W"})
    self.assertEqual(schema.legacy_value(fields("heidelberg_digits"), "data.augment"),
                     {k: self.LEGACY[f"data.augment.{k}"] for k in augment.FIELDS})

  @parameterized.parameters(*VARIANTS)
  def test_a_saved_config_without_a_field_resumes_only_at_its_legacy_value(self, task, variant):
    resolved = json.loads(TASK_MODULES[task].get_config(variant).to_json_best_effort())
    resolved["methods"] = list(methods.METHODS)  # so that every method's options count
    for f in fields(task):
      saved = without(resolved, f.path)
      changed, added = workdir.compare_configs(saved, resolved)
      if f.legacy is schema.SINCE_START:
        if f.path == "methods":  # without it no method trains, so no method's options count either
          self.assertIn(f.path, changed)
          continue
        self.assertEqual(changed, [f.path], f.path)  # no config was ever saved without it
        continue
      at_legacy = _lookup(resolved, f.path) == schema.legacy_value(fields(task), f.path)
      self.assertEqual((changed, added), ([], [f.path]) if at_legacy else ([f.path], [f.path]), f.path)
      # Today's value is not the legacy one: a different run, refused.
      other = json.loads(json.dumps(resolved))
      _set(other, f.path, "<another value>")
      self.assertEqual(workdir.compare_configs(saved, other)[0], [f.path], f.path)
      # And the legacy fill reads the saved config as today's when the value is the legacy one.
      filled = workdir.with_added_fields(saved)
      self.assertEqual(_lookup(filled, f.path), schema.legacy_value(fields(task), f.path), f.path)

  def test_a_recipe_counts_only_for_the_methods_a_run_trains(self):
    saved = json.loads(copy_paste.get_config("tiny").to_json_best_effort())
    saved["methods"] = ["bptt", "rhel"]
    tuned = json.loads(json.dumps(saved))
    tuned["recipes"] = {"eprop": {"train": {"lr": 1e-3}}}  # a recipe added later for another method
    self.assertEqual(workdir.compare_configs(saved, tuned), ([], []))
    tuned["methods"] = ["bptt", "rhel", "eprop"]  # ...is part of a run that trains that method
    self.assertEqual(workdir.compare_configs(saved, tuned)[0], ["methods", "recipes.eprop"])
    saved["methods"] = tuned["methods"]
    self.assertEqual(workdir.compare_configs(saved, tuned)[0], ["recipes.eprop"])

  def test_a_method_option_counts_only_for_the_methods_that_read_it(self):
    saved = json.loads(copy_paste.get_config("tiny").to_json_best_effort())
    saved["methods"] = ["bptt", "tbptt"]
    other = json.loads(json.dumps(saved))
    other["method"]["eprop_online"] = not saved["method"]["eprop_online"]  # e-prop's, not trained here
    self.assertEqual(workdir.compare_configs(saved, other), ([], []))
    other["method"]["tbptt_k"] = saved["method"]["tbptt_k"] + 1  # tBPTT's window: a different run
    self.assertEqual(workdir.compare_configs(saved, other)[0], ["method.tbptt_k"])
    del saved["method"]["eprop_online"]  # a config saved before the option existed resumes at any value
    self.assertEqual(workdir.compare_configs(saved, other)[0], ["method.tbptt_k"])

  def test_a_config_from_before_every_added_field_names_the_same_feature_cache(self):
    for variant in ("full", "quick"):
      config = heidelberg_digits.get_config(variant)
      resolved = json.loads(config.to_json_best_effort())
      oldest = resolved
      for f in fields("heidelberg_digits"):
        if f.legacy is not schema.SINCE_START:
          oldest = without(oldest, f.path)
      self.assertNotIn("cmvn", oldest["data"])
      filled = ml_collections.ConfigDict(workdir.with_added_fields(oldest))
      self.assertEqual(hd_data.hd_config(filled.data).name, hd_data.hd_config(config.data).name)
      self.assertEqual(hd_data.standin_dir(filled.data), hd_data.standin_dir(config.data))
      # hd_data reads such a data section directly too, at the legacy values.
      raw = ml_collections.ConfigDict(oldest["data"])
      self.assertEqual(hd_data.hd_config(raw).name, hd_data.hd_config(config.data).name)
    self.assertEqual(hd_data.hd_config(heidelberg_digits.get_config("quick").data).name,
                     "sr16000_mel40_win25_hop10_ds2_val1")


class MirrorsTest(absltest.TestCase):
  """The data fields name the data layer's options with its defaults, and the method fields are the
  registry's options."""

  def test_data_fields_mirror_the_data_layer(self):
    from data.heidelberg_digits import CMVN_MODES, HDConfig  # noqa: PLC0415  (TFDS)
    declared = {f.path: f for f in hd_data.FIELDS if isinstance(f, schema.Field)}
    self.assertIn("one of ['none', 'mean', 'meanvar']", declared["data.cmvn"].check.describe())
    self.assertEqual(list(CMVN_MODES), ["none", "mean", "meanvar"])
    for name in hd_data.feature_fields():
      f = declared[f"data.{name}"]
      if f.legacy is not schema.SINCE_START:  # the feature option's default reproduces the features before it
        self.assertEqual(f.legacy, HDConfig.__dataclass_fields__[name].default, name)
    self.assertEqual(len(hd_data.feature_fields()), 13)
    style = synth_corpus.Style()
    for name in hd_data.STYLE_FIELDS:
      f = declared[f"data.standin_{name}"]
      self.assertEqual((f.default, f.legacy), (getattr(style, name),) * 2, name)
    cfg = augment.AugmentConfig()
    self.assertEqual({p for p in declared if p.startswith("data.augment.")},
                     {f"data.augment.{k}" for k in augment.FIELDS})
    for name in augment.FIELDS:
      f = declared[f"data.augment.{name}"]
      self.assertEqual((f.default, f.legacy), (getattr(cfg, name),) * 2, name)

  def test_a_method_option_is_a_config_field_declared_by_the_registry(self):
    option = methods.Option("gamma", 0.5, "positive_float", config_key="test_gamma", legacy=0.5, doc="test only")
    methods.register(methods.Method("test_gamma_method", lambda *a, **k: None, (option,)))
    self.addCleanup(methods.unregister, "test_gamma_method")
    config = copy_paste.get_config("tiny")
    self.assertEqual(config.method.test_gamma, 0.5)
    config.method.test_gamma = -1.0
    with self.assertRaisesRegex(ValueError, r"^config\.method\.test_gamma must be a number > 0, got -1\.0"):
      validate_config(config)
    config.method.test_gamma = 0.5
    resolved = json.loads(config.to_json_best_effort())
    resolved["methods"] = ["test_gamma_method"]  # an option counts where its method trains
    self.assertEqual(workdir.compare_configs(without(resolved, "method.test_gamma"), resolved),
                     ([], ["method.test_gamma"]))
    eprop = [f for f in fields("copy_paste") if f.path == "method.eprop_online"][0]
    self.assertEqual((eprop.default, eprop.legacy), (True, True))


class WorkedExampleTest(absltest.TestCase):
  """The architecture page's example of adding a field is the code's."""

  def test_the_declaration_shown_is_the_one_in_hd_data(self):
    text = architecture.CONFIG_FIELD_EXAMPLE
    shown = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    squash = lambda s: re.sub(r"\s+", " ", s).strip()
    source = squash(open(hd_data.__file__).read())
    self.assertIn(squash(shown), source)
    declared = eval(squash(shown).rstrip(","), vars(schema))  # noqa: S307  (our own doc text)
    self.assertEqual(declared, [f for f in hd_data.FIELDS if getattr(f, "path", "") == "data.top_db"][0])

  def test_the_error_shown_is_the_one_the_check_raises(self):
    text = architecture.CONFIG_FIELD_EXAMPLE
    shown = re.search(r"`--config: (config\.data\.top_db must be [^`]*)`", text).group(1)
    config = heidelberg_digits.get_config("full")
    config.data.top_db = -1  # what --config.data.top_db=-1 sets: the field is a float
    with self.assertRaises(ValueError) as e:
      validate_config(config)
    self.assertEqual(str(e.exception), shown)
    self.assertIn('"data.top_db": 40.0', open(heidelberg_digits.__file__).read())
    self.assertEqual(heidelberg_digits.get_config("dev").data.top_db, 40.0)


def _leaf_paths(tree, prefix=""):
  for k, v in tree.items():
    if isinstance(v, dict) and v and k not in ("recipes", "sweep"):
      yield from _leaf_paths(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}"


def _lookup(tree, path):
  for part in path.split("."):
    tree = tree[part]
  return tree


def _set(tree, path, value):
  *parents, leaf = path.split(".")
  for part in parents:
    tree = tree[part]
  tree[leaf] = value


if __name__ == "__main__":
  absltest.main()

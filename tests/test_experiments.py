"""The experiment entry point on shrunk configs: outputs, resume, bad configs."""
import json
import os
import signal
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl.testing import absltest
from flax import serialization

from experiments import checkpoints, copy_paste, report, train
from experiments import workdir as workdir_mod

ROOT = pathlib.Path(__file__).parents[1]


def tiny_config(**overrides):
  c = copy_paste.get_config("tiny")
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _final(workdir, method):
  return json.loads((pathlib.Path(workdir) / method / "final.json").read_text())


class _TempDirs(absltest.TestCase):

  def tmp(self) -> str:
    # absltest's create_tempdir needs parsed absl flags, which pytest does not provide.
    d = tempfile.TemporaryDirectory()
    self.addCleanup(d.cleanup)
    return d.name


class RunExperimentTest(_TempDirs):

  def test_every_method_writes_its_outputs(self):
    # tbptt and eprop go through the same trainer; the entry-point test trains them.
    workdir = pathlib.Path(self.tmp())
    config = tiny_config(methods=("bptt", "rhel", "rhel_centered"))
    rows = train.run_experiment(config, workdir)
    self.assertEqual([r["method"] for r in rows], list(config.methods))
    self.assertTrue((workdir / "config.json").exists())
    table = (workdir / "results.md").read_text()
    for method in config.methods:
      self.assertIn(f"| {method} |", table)
      metrics = checkpoints.read_jsonl(workdir / method / "metrics.jsonl")
      self.assertEqual(sorted((r["epoch"], r["seed"]) for r in metrics),
                       [(e, s) for e in range(3) for s in range(2)])
      align = checkpoints.read_jsonl(workdir / method / "alignment.jsonl")
      self.assertEqual(sorted((r["epoch"], r["seed"]) for r in align), [(0, 0), (0, 1), (2, 0), (2, 1)])
      for r in align:
        self.assertBetween(r["cos_all"], -1.0, 1.0 + 1e-6)
        if method == "bptt":
          self.assertAlmostEqual(r["cos_all"], 1.0, places=5)
        if method == "rhel_centered":
          self.assertGreater(r["cos_all"], 0.99)  # float32, eps=1e-3: RHEL tracks BPTT
      final = _final(workdir, method)
      self.assertLen(final["test_bit_acc"], 2)
      self.assertTrue(all(0.0 <= a <= 1.0 for a in final["test_bit_acc"]))
      self.assertEqual(sorted(p.name for p in (workdir / method).glob("checkpoint_*")),
                       ["checkpoint_2", "checkpoint_3"])  # the two newest, complete (Orbax directories)
    # The report generator reads the same outputs back.
    run = report.load_run(workdir)
    markdown, table_csv = report.table1([run])
    self.assertIn("| rhel_centered |", markdown)
    self.assertIn("99.36 ± 0.02", markdown)  # the paper's column beside ours
    self.assertLen(table_csv.strip().splitlines(), 1 + len(config.methods))
    summary = report.alignment_summary(run)
    self.assertEqual(sorted(summary["rhel"]), [0, 2])
    self.assertEqual(summary["rhel"][0][2], 2)  # seeds per point
    report.figure1([run], workdir / "figure1.png")
    self.assertGreater((workdir / "figure1.png").stat().st_size, 1000)
    by_tensor = report.alignment_by_tensor([run])
    self.assertLen([l for l in by_tensor.splitlines() if l.startswith("| copy_paste | rhel")], 4)  # 2 methods x 2 epochs
    self.assertIn("recall accuracy (%) at each step", markdown)
    for method in config.methods:
      self.assertLen(checkpoints.read_jsonl(workdir / method / "timing.jsonl"), 3)
      self.assertGreater(checkpoints.wall_seconds(workdir / method), 0)
      self.assertLen(_final(workdir, method)["test_acc_by_step"][0], config.task.pattern_length * 2)

  def test_report_merges_a_sweep_split_over_workdirs(self):
    first, second, other = (pathlib.Path(self.tmp()) for _ in range(3))
    train.run_experiment(tiny_config(num_epochs=1, alignment_epochs=(0,), methods=("bptt",)), first)
    train.run_experiment(tiny_config(num_epochs=1, alignment_epochs=(0,), methods=("readout",)), second)
    merged = report.merge_runs([report.load_run(first), report.load_run(second)])
    self.assertLen(merged, 1)
    self.assertEqual(sorted(merged[0]["methods"]), ["bptt", "readout"])
    markdown, _ = report.table1(merged)
    self.assertIn("| readout |", markdown)
    self.assertIn("| bptt |", markdown)
    # An option of a method neither part trains may differ (e-prop's form changes nothing for BPTT),
    # and a saved config that predates a field counts at the field's old behaviour.
    parts = [report.load_run(first), report.load_run(second)]
    parts[1]["config"]["method"]["eprop_online"] = False
    del parts[0]["config"]["method"]["eprop_online"]
    self.assertLen(report.merge_runs(parts), 1)
    parts = [report.load_run(first), report.load_run(second)]
    parts[1]["config"]["model"]["dt"] = 0.25
    with self.assertRaisesRegex(ValueError, "different configs"):
      report.merge_runs(parts)
    train.run_experiment(tiny_config(num_epochs=1, alignment_epochs=(0,), methods=("rhel",), seed=7), other)
    with self.assertRaisesRegex(ValueError, "different configs"):
      report.merge_runs([report.load_run(first), report.load_run(other)])
    with self.assertRaisesRegex(ValueError, "appear in both"):
      report.merge_runs([report.load_run(first), report.load_run(first)])
    # Another config of the same task (a variant) gets its own column, named after the config.
    variant = report.load_run(first)
    variant["config"]["name"], variant["config"]["model"]["dt"] = "copy_paste_variant", 0.25
    columns = report.merge_runs([report.load_run(first), report.load_run(second), variant])
    self.assertEqual([r["label"] for r in columns], ["copy_paste_tiny", "copy_paste_variant"])
    self.assertIn("| copy_paste_tiny (ours) | copy_paste_tiny (paper) |", report.table1(columns)[0])
    # A method without final.json (still training) shows its newest epoch, not a blank.
    (second / "readout" / "final.json").unlink()
    markdown, _ = report.table1(report.merge_runs([report.load_run(first), report.load_run(second)]))
    self.assertRegex(markdown, r"\| readout \| in progress: epoch 1/1, \d+\.\d\d ± \d+\.\d\d \|")

  def test_resume_after_interruption_is_bit_identical_to_an_uninterrupted_run(self):
    config = tiny_config(methods=("rhel",), num_epochs=4)
    straight = self.tmp()
    train.run_experiment(config, straight)

    interrupted = pathlib.Path(self.tmp())
    original = checkpoints.save_checkpoint

    def save_then_die(directory, epoch, target, keep=2):
      original(directory, epoch, target, keep)
      if epoch == 2:
        raise KeyboardInterrupt  # killed right after the epoch-2 checkpoint (still being written)
    train.checkpoints.save_checkpoint = save_then_die
    try:
      with self.assertRaises(KeyboardInterrupt):
        train.run_experiment(config, interrupted)
    finally:
      train.checkpoints.save_checkpoint = original
    self.assertFalse((interrupted / "rhel" / "final.json").exists())
    checkpoints.wait_until_finished()  # the process lives on here: its background save completes
    # The same state as a workdir written before Orbax: checkpoint_2.msgpack, made as the old code did.
    legacy = pathlib.Path(self.tmp())
    shutil.copytree(interrupted, legacy, dirs_exist_ok=True)
    state = checkpoints.read_checkpoint(legacy / "rhel" / "checkpoint_2", self._initial_state(config, "rhel"))
    for p in (legacy / "rhel").glob("checkpoint_*"):
      shutil.rmtree(p)
    (legacy / "rhel" / "checkpoint_2.msgpack").write_bytes(serialization.to_bytes(state))

    for resumed in (interrupted, legacy):
      with self.assertLogs(level="INFO") as logs:
        train.run_experiment(config, resumed)
      self.assertIn("[rhel] resuming from the checkpoint at epoch 2", "\n".join(logs.output))
      # Same seed and config: bit-identical, interrupted or not.
      self.assertEqual(_final(resumed, "rhel"), _final(straight, "rhel"))
      self.assertEqual((resumed / "rhel" / "metrics.jsonl").read_text(),
                       (pathlib.Path(straight) / "rhel" / "metrics.jsonl").read_text())
      metrics = checkpoints.read_jsonl(resumed / "rhel" / "metrics.jsonl")
      self.assertEqual([r["epoch"] for r in metrics], [e for e in range(4) for _ in range(2)])
      # The msgpack was read once; the run went on in Orbax's format, and the old file is gone.
      self.assertEqual(sorted(p.name for p in (resumed / "rhel").glob("checkpoint_*")),
                       ["checkpoint_3", "checkpoint_4"])

  @staticmethod
  def _initial_state(config, method):
    trainer = train.MethodTrainer(config, train.build_task(config, np.float32), method, np.float32)
    return trainer.init(train.seed_keys(config.seed, config.num_seeds)[0])

  def test_corrupt_latest_checkpoint_falls_back_to_the_previous(self):
    config = tiny_config(methods=("bptt",))
    workdir = pathlib.Path(self.tmp())
    train.run_experiment(config, workdir)
    reference = _final(workdir, "bptt")
    # Orbax checksums its data: a truncated file in the newest checkpoint is caught on reading.
    latest = workdir / "bptt" / "checkpoint_3"
    data_files = sorted((latest / checkpoints.ITEM / "d").iterdir())
    self.assertNotEmpty(data_files)
    for f in data_files:
      f.write_bytes(f.read_bytes()[:20])
    (workdir / "bptt" / "final.json").unlink()
    with self.assertLogs(level="WARNING") as logs:
      train.run_experiment(config, workdir)
    self.assertIn(f"checkpoint {latest} is unreadable", "\n".join(logs.output))
    self.assertTrue((workdir / "bptt" / "checkpoint_3.unreadable").is_dir())  # set aside, not deleted
    with self.assertRaises(Exception):
      checkpoints.read_checkpoint(workdir / "bptt" / "checkpoint_3.unreadable")
    self.assertEqual(checkpoints.restore_params(workdir / "bptt")[0], 3)  # the new epoch-3 checkpoint reads
    # Resumed from epoch 2, the last epoch again: the same result as the first time.
    self.assertEqual(_final(workdir, "bptt"), reference)
    self.assertEqual(sorted(p.name for p in (workdir / "bptt").glob("checkpoint_*[0-9]")),
                     ["checkpoint_2", "checkpoint_3"])

  def test_a_diverged_seed_is_frozen_reported_and_left_out(self):
    original_init = train.MethodTrainer.__init__

    def poisoned_init(self, *args, **kwargs):
      original_init(self, *args, **kwargs)
      init = self.init

      def init_with_nan_seed(keys):  # seed 1 starts with a NaN bias: its first loss is NaN
        state = init(keys)
        state["params"]["b"] = state["params"]["b"].at[1, 0].set(np.nan)
        return state
      self.init = init_with_nan_seed
    train.MethodTrainer.__init__ = poisoned_init
    workdir = pathlib.Path(self.tmp())
    try:
      with self.assertLogs(level="INFO") as logs:
        rows = train.run_experiment(tiny_config(methods=("rhel",), num_seeds=3), workdir)
    finally:
      train.MethodTrainer.__init__ = original_init
    self.assertIn("DIVERGED seeds [1]", "\n".join(logs.output))
    final = _final(workdir, "rhel")
    self.assertEqual(final["diverged"], [False, True, False])
    self.assertEqual(rows[0]["seeds"], 2)
    self.assertEqual(rows[0]["diverged_seeds"], [1])
    mean, _ = rows[0]["test_bit_acc"]
    self.assertAlmostEqual(mean, np.mean([final["test_bit_acc"][0], final["test_bit_acc"][2]]), places=6)
    self.assertTrue(all(np.isfinite(final["test_loss"][s]) for s in (0, 2)))
    self.assertIn("Diverged seeds (non-finite loss or gradient", (workdir / "results.md").read_text())

  def test_invalid_values_name_the_field(self):
    workdir = self.tmp()
    for key, value, field in (("model.dt", -1.0, "config.model.dt"), ("num_seeds", 0, "config.num_seeds"),
                              ("methods", ("rhel", "bogus"), "config.methods"),
                              ("alignment_epochs", (0, 99), "config.alignment_epochs"),
                              ("task.seq_len", 5, "config.task.seq_len"),
                              ("model.grid_bits", 30, "config.model.grid_bits"),
                              ("model.unroll", 0, "config.model.unroll"),
                              ("method.eps", -1.0, "config.method.eps"),
                              ("method.tbptt_k", 0, "config.method.tbptt_k")):
      with self.assertRaisesRegex(ValueError, field):
        train.run_experiment(tiny_config(**{key: value}), workdir)

  def test_workdir_with_another_config_is_refused(self):
    workdir = pathlib.Path(self.tmp())
    train.prepare_workdir(tiny_config(), workdir, overwrite=False)  # what a run writes before training
    with self.assertRaisesRegex(ValueError, "different config.*seed"):
      train.run_experiment(tiny_config(seed=4), workdir)
    train.prepare_workdir(tiny_config(seed=4), workdir, overwrite=True)
    self.assertEqual(json.loads((workdir / "config.json").read_text())["seed"], 4)

  def test_a_field_added_by_newer_code_does_not_block_resuming(self):
    workdir = pathlib.Path(self.tmp())
    train.prepare_workdir(tiny_config(), workdir, overwrite=False)
    saved = json.loads((workdir / "config.json").read_text())
    del saved["train"]["frozen_params"]  # as written by the code before that field existed
    (workdir / "config.json").write_text(json.dumps(saved))
    train.prepare_workdir(tiny_config(), workdir, overwrite=False)
    self.assertEqual(json.loads((workdir / "config.json").read_text())["train"]["frozen_params"], [])
    # A new field whose value changes behaviour (here the W init) is refused, like any change.
    spectral = tiny_config(**{"model.w_init": "spectral"})
    train.prepare_workdir(spectral, workdir, overwrite=True)
    saved_spectral = json.loads((workdir / "config.json").read_text())
    del saved_spectral["model"]["w_init"]
    (workdir / "config.json").write_text(json.dumps(saved_spectral))
    with self.assertRaisesRegex(ValueError, r"different config \(fields \['model.w_init'\]"):
      train.prepare_workdir(spectral, workdir, overwrite=False)
    saved["train"]["lr"] = 0.5  # and a changed one is refused
    (workdir / "config.json").write_text(json.dumps(saved))
    with self.assertRaisesRegex(ValueError, r"different config \(fields \['train.lr'\]"):
      train.prepare_workdir(tiny_config(), workdir, overwrite=False)

  def test_every_run_ends_with_its_pictures_linked_from_results_md(self):
    workdir = pathlib.Path(self.tmp())
    train.run_experiment(tiny_config(methods=("bptt", "rhel", "readout"), num_epochs=2, alignment_epochs=(0, 1)),
                         workdir)
    text = (workdir / "results.md").read_text()
    import matplotlib.image  # noqa: PLC0415
    for name in ("curves.png", "alignment.png", "acc_by_step.png"):
      self.assertIn(f"]({name})", text)
      image = matplotlib.image.imread(workdir / name)
      self.assertGreater(image.shape[0] * image.shape[1], 100_000, name)  # a real figure, not an empty file
      self.assertGreater(float(image[..., :3].std()), 0.05, name)  # something is drawn on it

  def test_a_renamed_field_resumes_under_its_new_name(self):
    # train.w_lr_scale became train.lr_scale.W: a workdir saved with the old name resumes when the
    # value agrees, and is refused, naming the new field, when it does not.
    workdir = pathlib.Path(self.tmp())
    config = tiny_config(**{"train.lr_scale.W": 0.1})
    train.prepare_workdir(config, workdir, overwrite=False)
    saved = json.loads((workdir / "config.json").read_text())
    del saved["train"]["lr_scale"]
    saved["train"]["w_lr_scale"] = 0.1
    (workdir / "config.json").write_text(json.dumps(saved))
    train.prepare_workdir(config, workdir, overwrite=False)
    rewritten = json.loads((workdir / "config.json").read_text())["train"]
    self.assertEqual(rewritten["lr_scale"], {"W": 0.1, "b": 1.0, "B": 1.0, "W_out": 1.0, "b_out": 1.0})
    self.assertNotIn("w_lr_scale", rewritten)
    (workdir / "config.json").write_text(json.dumps(saved))
    with self.assertRaisesRegex(ValueError, r"different config \(fields \['train.lr_scale.W'\]"):
      train.prepare_workdir(tiny_config(), workdir, overwrite=False)

  def test_a_finished_run_kept_without_checkpoints_is_not_trained_again(self):
    workdir = pathlib.Path(self.tmp())
    config = tiny_config(methods=("readout",))
    rows = train.run_experiment(config, workdir)
    kept = pathlib.Path(self.tmp()) / "kept"
    workdir_mod.keep_finished(workdir, kept)
    self.assertFalse(list(kept.rglob("checkpoint_*")))
    metrics = (kept / "readout" / "metrics.jsonl").read_bytes()
    with self.assertLogs(level="INFO") as logs:
      again = train.run_experiment(config, kept)
    self.assertTrue(any("finished earlier" in m for m in logs.output), logs.output)
    self.assertEqual((kept / "readout" / "metrics.jsonl").read_bytes(), metrics)  # nothing re-ran
    self.assertFalse(list(kept.rglob("checkpoint_*")))
    self.assertEqual([{k: v for k, v in r.items() if k != "wall_seconds"} for r in again],
                     [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows])
    # Another config is still refused, not taken as finished.
    with self.assertRaisesRegex(ValueError, r"different config \(fields \['num_epochs'\]"):
      train.run_experiment(tiny_config(methods=("readout",), num_epochs=4), kept)

  def test_a_methods_files_do_not_depend_on_the_other_methods_of_its_run(self):
    # What lets workdir.split_method (table1 --adopt) take one method of a run as a run of its own.
    together, alone = pathlib.Path(self.tmp()), pathlib.Path(self.tmp())
    train.run_experiment(tiny_config(methods=("bptt", "readout")), together)
    train.run_experiment(tiny_config(methods=("readout",)), alone)
    split = pathlib.Path(self.tmp()) / "split"
    workdir_mod.split_method(together, "readout", split)
    self.assertEqual((split / "config.json").read_bytes(), (alone / "config.json").read_bytes())
    for name in ("metrics.jsonl", "alignment.jsonl", "final.json"):
      self.assertEqual((split / "readout" / name).read_bytes(), (alone / "readout" / name).read_bytes(), name)
    self.assertFalse(list(split.rglob("checkpoint_*")))
    self.assertEqual(checkpoints.read_jsonl(split / "invocations.jsonl")[-1]["split_from"], str(together))
    with self.assertRaisesRegex(ValueError, "no finished 'rhel' run"):
      workdir_mod.split_method(together, "rhel", split)

  def test_frozen_params_keep_their_initial_values(self):
    workdir = pathlib.Path(self.tmp())
    config = tiny_config(methods=("bptt",), num_epochs=1, checkpoint_every=1, alignment_epochs=())
    config.train.frozen_params = ("W", "b")
    train.run_experiment(config, workdir)
    trainer = train.MethodTrainer(config, train.build_task(config, np.float32), "bptt", np.float32)
    keys = jax.vmap(lambda k: jax.random.split(k, 4))(jax.random.split(jax.random.key(config.seed), 2))[:, 0]
    init = trainer.init(keys)
    _, trained = checkpoints.restore_latest(workdir / "bptt", init)
    for name in ("W", "b"):
      np.testing.assert_array_equal(trained["params"][name], init["params"][name])
    for name in ("B", "W_out"):
      self.assertFalse(np.array_equal(trained["params"][name], init["params"][name]), name)
    with self.assertRaisesRegex(ValueError, "config.train.frozen_params"):
      train.validate_config(tiny_config(**{"train.frozen_params": ("V",)}))


class HeidelbergDigitsExperimentTest(_TempDirs):

  def test_trains_on_a_directory_in_the_official_layout(self):
    from experiments import heidelberg_digits
    from tests.test_hd_data import tiny_corpus
    c = heidelberg_digits.get_config("quick")
    c.data.manual_dir = str(tiny_corpus() / "archive")
    c.data.data_dir = self.tmp()
    c.methods = ("rhel_centered",)
    c.num_seeds, c.num_epochs, c.batch_size, c.alignment_batch_size = 2, 2, 4, 4
    c.alignment_epochs = (1,)
    c.model.num_hidden = 8
    workdir = pathlib.Path(self.tmp())
    rows = train.run_experiment(c, workdir)
    self.assertEqual([r["method"] for r in rows], ["rhel_centered"])
    text = (workdir / "results.md").read_text()
    self.assertIn("split sizes: {'train': 15, 'validation': 6, 'test': 15}", text)
    final = _final(workdir, "rhel_centered")
    self.assertLen(final["test_accuracy"], 2)
    align = checkpoints.read_jsonl(workdir / "rhel_centered" / "alignment.jsonl")
    self.assertTrue(all(r["cos_all"] > 0.99 for r in align))


class MainEntryPointTest(_TempDirs):

  def _main(self, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)

  def test_tiny_config_runs_end_to_end(self):
    workdir = self.tmp()
    out = self._main("--config=experiments/copy_paste.py:tiny", f"--workdir={workdir}",
                     "--config.methods=('tbptt','eprop')", "--config.num_epochs=2",
                     "--config.steps_per_epoch=2", "--config.task.seq_len=30", "--config.alignment_epochs=(1,)")
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    self.assertIn("[tbptt] epoch 2/2", out.stderr)
    self.assertIn("[eprop] epoch 2/2", out.stderr)
    self.assertIn("ETA", out.stderr)
    self.assertIn("| eprop |", out.stdout)
    saved = json.loads((pathlib.Path(workdir) / "config.json").read_text())
    self.assertEqual(saved["methods"], ["tbptt", "eprop"])

  def test_sigterm_and_sigkill_then_resume_match_an_uninterrupted_run(self):
    flags = ["--config=experiments/copy_paste.py:tiny", "--config.methods=('rhel',)",
             "--config.num_epochs=40", "--config.alignment_epochs=(0,)"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")

    def start(workdir, *extra):
      proc = subprocess.Popen([sys.executable, "-m", "experiments.main", *flags, *extra, f"--workdir={workdir}"],
                              cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
      self.addCleanup(lambda: proc.poll() is None and proc.kill())
      return proc

    def wait_for(proc, text):
      for line in proc.stderr:  # wait until training is under way
        if text in line:
          return
      self.fail(f"the run ended before {text!r}")

    # SIGTERM: the current epoch ends and is checkpointed, then the process exits.
    workdir = pathlib.Path(self.tmp())
    proc = start(workdir, "--config.checkpoint_every=50")
    wait_for(proc, "[rhel] epoch 2/40")
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=300)[1]
    self.assertEqual(proc.returncode, 128 + signal.SIGTERM, rest[-2000:])
    self.assertIn("stopped by SIGTERM", rest)
    self.assertFalse((workdir / "rhel" / "final.json").exists())
    saved = list((workdir / "rhel").glob("checkpoint_*"))
    self.assertLen(saved, 1)  # checkpoint_every=50 would have saved nothing before the end
    self.assertRegex(saved[0].name, r"^checkpoint_\d+$")  # complete: Orbax renamed it into place
    self.assertEqual(self._main(*flags, "--config.checkpoint_every=50", f"--workdir={workdir}").returncode, 0)

    # SIGKILL: no warning, maybe in the middle of a background save; the run resumes from the newest
    # complete checkpoint (Orbax clears the partial one).
    killed = pathlib.Path(self.tmp())
    proc = start(killed, "--config.checkpoint_every=1")
    wait_for(proc, "[rhel] epoch 6/40")
    proc.kill()
    proc.communicate(timeout=300)
    self.assertFalse((killed / "rhel" / "final.json").exists())
    resumed = self._main(*flags, "--config.checkpoint_every=1", f"--workdir={killed}")
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-2000:])
    # The epoch-5 checkpoint was complete before epoch 6 was logged (each save waits for the one before).
    start = int(re.search(r"\[rhel\] resuming from the checkpoint at epoch (\d+)", resumed.stderr).group(1))
    self.assertBetween(start, 5, 39)
    self.assertEqual(sorted(p.name for p in (killed / "rhel").glob("checkpoint_*")), ["checkpoint_39", "checkpoint_40"])

    # The reference runs in a subprocess too: the test process has jax_enable_x64 on, which changes
    # the float32 run's round-off (optax's step counts become int64), and training amplifies that.
    reference = self.tmp()
    self.assertEqual(self._main(*flags, f"--workdir={reference}").returncode, 0)
    self.assertEqual(_final(workdir, "rhel"), _final(reference, "rhel"))
    self.assertEqual(_final(killed, "rhel"), _final(reference, "rhel"))

  def test_typo_in_override_fails_naming_the_key(self):
    out = self._main("--config=experiments/copy_paste.py:quick", "--config.trian.lr=0.1")
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("trian", out.stderr)

  def test_a_bad_value_stops_naming_the_field_before_anything_runs(self):
    workdir = pathlib.Path(self.tmp()) / "run"
    out = self._main("--config=experiments/copy_paste.py:tiny", "--config.model.dt=-1", f"--workdir={workdir}")
    self.assertEqual(out.returncode, 1)
    self.assertEqual(out.stderr.strip().splitlines()[-1], "--config: config.model.dt must be a number > 0, got -1.0")
    self.assertNotIn("Traceback", out.stderr)
    self.assertFalse(workdir.exists())

  def test_unknown_variant_fails(self):
    out = self._main("--config=experiments/copy_paste.py:huge")
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("unknown variant 'huge'", out.stderr)


if __name__ == "__main__":
  absltest.main()

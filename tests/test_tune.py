"""The tuning rule of docs/tuning.md: its grid, its folds and its choice."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from absl.testing import absltest

from experiments import copy_paste, tune, workdir
from experiments.heidelberg_digits import get_config as hd_config


class TuneTest(absltest.TestCase):

  def test_the_grid_scales_the_recurrent_tensors_on_top_of_the_recipe(self):
    config = copy_paste.get_config("full")  # W's own multiplier is 0.1
    settings = tune.grid(config, "eprop")
    self.assertLen(settings, 15)
    s = {x.label: x for x in settings}["lr0.001_rec0.03"]
    self.assertEqual(s.fields, {"train.lr": 1e-3, "train.lr_scale.W": 0.003, "train.lr_scale.b": 0.03,
                                "train.lr_scale.B": 0.03, "method.eprop_online": False})
    self.assertEqual(s.runs(), [("lr0.001_rec0.03", s.fields)])
    run = tune.run_config(config, "eprop", s.label, s.fields)
    self.assertEqual((run.seed, run.num_epochs, tuple(run.methods), run.train.lr_scale.W),
                     (tune.VALIDATION_SEED, 50, ("eprop",), 0.003))
    self.assertEqual(run.train.lr_scale.W_out, 1.0)  # the readout keeps the base lr
    with self.assertRaisesRegex(ValueError, "--method='bptt'"):
      tune.grid(config, "bptt")

  def test_a_fold_protocol_runs_each_setting_once_per_held_out_speaker(self):
    config = hd_config("quick")
    config.data.num_validation_speakers = 0
    settings = tune.grid(config, "tbptt")
    self.assertLen(settings, 9)
    names = [name for name, _ in settings[0].runs()]
    self.assertEqual(names, [f"{settings[0].label}_val{k}" for k in (0, 1, 2)])
    fields = settings[0].runs()[2][1]
    self.assertEqual((fields["data.validation_speaker"], fields["data.eval_split"], fields["num_seeds"]),
                     (2, "validation", 3))

  def test_the_best_mean_wins_and_a_tie_goes_to_the_smaller_change(self):
    config = copy_paste.get_config("full")
    settings = tune.grid(config, "tbptt")
    results = {s.label: [0.70, 0.72] for s in settings}
    results["lr0.0003_rec0.01"] = [0.80, 0.80]
    self.assertEqual(tune.pick(config, "tbptt", results, settings)["chosen"], "lr0.0003_rec0.01")
    # Within 0.1 point: the setting closer to the recipe (lr 3e-3, multiplier 1) wins.
    results["lr0.003_rec0.3"] = [0.7995, 0.7999]
    choice = tune.pick(config, "tbptt", results, settings)
    self.assertEqual(choice["chosen"], "lr0.003_rec0.3")
    self.assertEqual(sorted(choice["tied"]), ["lr0.0003_rec0.01", "lr0.003_rec0.3"])

  def test_a_run_claimed_by_one_process_is_passed_over_by_another_until_it_dies(self):
    workdir = pathlib.Path(tempfile.mkdtemp()) / "lr0.001_rec1"
    with tune.claim(workdir) as first:
      with tune.claim(workdir) as second:  # another open file description: as another process sees it
        self.assertEqual((first, second), (True, False))
    with tune.claim(workdir) as again:
      self.assertTrue(again)
    # A holder killed without cleaning up leaves no claim behind.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", f"{workdir}.lock"],
        stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), "held")
      with tune.claim(workdir) as mine:
        self.assertFalse(mine)
    finally:
      os.kill(holder.pid, signal.SIGKILL)
      holder.wait()
    with tune.claim(workdir) as mine:
      self.assertTrue(mine)

  def test_a_kept_run_has_no_checkpoints_and_comes_back_in_place_of_an_unfinished_one(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    run, kept = tmp / "runs" / "lr0.001_rec1", tmp / "kept" / "lr0.001_rec1"
    _fake_run(run, "eprop", [0.8, 0.7], checkpoint=True)
    (run / "curves.png").write_bytes(b"png")
    workdir.keep_finished(run, kept)
    self.assertEqual(sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")),
                     ["config.json", "eprop", "eprop/final.json", "eprop/metrics.jsonl"])
    # A fresh run directory, stopped mid-way (a checkpoint, no final.json), gives way to the kept run.
    final = (run / "eprop" / "final.json").read_text()
    (run / "eprop" / "final.json").unlink()
    self.assertTrue(workdir.restore_finished(kept, run, "eprop"))
    self.assertEqual((run / "eprop" / "final.json").read_text(), final)
    self.assertFalse((run / "eprop" / "checkpoint_5").exists())
    self.assertFalse(workdir.restore_finished(kept, run, "eprop"))  # a finished run is left alone
    self.assertFalse(workdir.restore_finished(tmp / "nothing", tmp / "runs" / "other", "eprop"))

  def test_a_grid_whose_runs_are_all_kept_trains_nothing_and_chooses(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    config = copy_paste.get_config("tiny")
    settings = tune.grid(config, "tbptt")
    for i, s in enumerate(settings):  # lr0.001_rec0.1 best; lr0.003_rec0.3 ties it (within 0.1 point)
      acc = {"lr0.001_rec0.1": 0.9, "lr0.003_rec0.3": 0.8995}.get(s.label, 0.5 + 0.01 * i)
      _fake_run(tmp / "kept" / s.label, "tbptt", [acc] * 3,
                config=tune.run_config(config, "tbptt", s.label, s.fields).to_json_best_effort())
    out = subprocess.run(
        [sys.executable, "-m", "experiments.tune", "--config=experiments/copy_paste.py:tiny", "--method=tbptt",
         f"--workdir={tmp / 'runs'}", f"--keep={tmp / 'kept'}"],
        capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1], timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    self.assertNotIn("epoch 1/", out.stderr)  # nothing trained
    for s in settings:
      self.assertTrue((tmp / "runs" / s.label / "tbptt" / "final.json").exists())
    # The tie goes to the smaller change from the recipe (lr 3e-3 is the recipe's).
    self.assertIn("**Chosen: `lr0.003_rec0.3`**", out.stdout)
    self.assertEqual((tmp / "kept" / "tuning.md").read_text(), (tmp / "runs" / "tuning.md").read_text())
    # A kept run of another config is refused, naming the field, not taken as a result.
    shutil.rmtree(tmp / "runs")
    saved = json.loads((tmp / "kept" / "lr0.001_rec1" / "config.json").read_text())
    saved["num_epochs"] = 7
    (tmp / "kept" / "lr0.001_rec1" / "config.json").write_text(json.dumps(saved))
    out = subprocess.run(
        [sys.executable, "-m", "experiments.tune", "--config=experiments/copy_paste.py:tiny", "--method=tbptt",
         f"--workdir={tmp / 'runs'}", f"--keep={tmp / 'kept'}"],
        capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1], timeout=300)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("different config (fields ['num_epochs'])", out.stderr)


def _fake_run(run: pathlib.Path, method: str, accuracies, checkpoint=False, config="{}"):
  """A finished run's files as experiments.train writes them (the ones tune reads, and a checkpoint)."""
  (run / method).mkdir(parents=True)
  (run / "config.json").write_text(config)
  (run / method / "final.json").write_text(json.dumps({"method": method, "test_bit_acc": accuracies}))
  (run / method / "metrics.jsonl").write_text("{}\n")
  if checkpoint:
    (run / method / "checkpoint_5").mkdir()
    (run / method / "checkpoint_5" / "state").write_bytes(b"x")


if __name__ == "__main__":
  absltest.main()

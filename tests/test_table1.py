"""``python -m experiments.table1`` end to end on a tiny config: the plan, two processes, a SIGTERM
and the resume, and the merged table with the tuned and shared-recipe rows."""
import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

from absl.testing import absltest

from tests.test_experiments import ROOT, _TempDirs

CONFIG = textwrap.dedent("""
    import ml_collections
    from experiments import copy_paste

    def get_config(variant="tiny"):
      c = copy_paste.get_config("tiny")
      c.methods = ("bptt", "eprop", "readout")
      c.num_epochs = 2
      c.recipes.eprop = ml_collections.ConfigDict({"train": {"lr": 1e-3, "lr_scale": {"B": 0.1}}})
      return c
""")


class Table1Test(_TempDirs):

  def _table1(self, *args, **popen):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "experiments.table1", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)

  def test_runs_resumes_after_sigterm_and_writes_the_merged_table(self):
    tmp = pathlib.Path(self.tmp())
    (tmp / "tiny_table1.py").write_text(CONFIG)
    root = tmp / "table1"
    args = ["--tasks=copy_paste", f"--config=copy_paste={tmp / 'tiny_table1.py'}", f"--workdir={root}",
            "--processes=2", "--methods=bptt,eprop"]
    dry = self._table1(*args, "--dry_run")
    out = dry.communicate(timeout=300)[0]
    self.assertEqual(dry.returncode, 0, out)
    for row in ("| copy_paste | bptt | shared |", "| copy_paste | eprop | lr=0.001, lr_scale.B=0.1 |",
                "| copy_paste | eprop (shared recipe) | shared |"):
      self.assertIn(row, out)
    self.assertIn("Estimated:", out)
    self.assertFalse(root.exists())  # a dry run starts nothing

    # Long enough to be stopped while training: 100 epochs of 3 steps, checkpoints every 200.
    proc = self._table1(*args, "--", "--config.num_epochs=100", "--config.checkpoint_every=200",
                        "--config.alignment_epochs=(0,)")
    deadline = time.time() + 300
    while not list(root.glob("*/*/*/metrics.jsonl")) and time.time() < deadline:
      time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    self.assertEqual(proc.returncode, 128 + signal.SIGTERM, out[-3000:])
    self.assertTrue(list(root.glob("*/*/*/checkpoint_*")), "a stopped run leaves its checkpoint")
    # A run may have finished before the signal (they are tiny); not all three can have.
    self.assertLess(len(list(root.glob("*/*/*/final.json"))), 3)

    kept = tmp / "kept"
    again = self._table1(*args, f"--keep={kept}", "--", "--config.num_epochs=100", "--config.checkpoint_every=200",
                         "--config.alignment_epochs=(0,)")
    out = again.communicate(timeout=600)[0]
    self.assertEqual(again.returncode, 0, out[-3000:])
    self.assertIn("resuming from the checkpoint", "".join(p.read_text() for p in root.glob("copy_paste/*.log")))
    table = (root / "table1.md").read_text()
    for row in ("| bptt |", "| eprop |", "| eprop (shared recipe) |"):
      self.assertIn(row, table)
    self.assertNotIn("in progress", table)
    self.assertNotIn("not started", table)
    rows = list(csv.DictReader((root / "table1.csv").open()))
    self.assertEqual(sorted(r["row"] for r in rows), ["bptt", "eprop", "eprop (shared recipe)"])
    self.assertTrue(all(r["epochs"] == "100" for r in rows))
    for name in ("figure1.png", "curves.png"):
      self.assertEqual((root / name).read_bytes()[:8], b"\x89PNG\r\n\x1a\n", name)

    # --keep kept each finished run without its checkpoints; a checkout without the runs gets them
    # back from there and trains nothing.
    self.assertLen(list(kept.glob("copy_paste/*/*/final.json")), 3)
    self.assertFalse(list(kept.rglob("checkpoint_*")))
    shutil.rmtree(root)
    restored = self._table1(*args, f"--keep={kept}", "--", "--config.num_epochs=100",
                            "--config.checkpoint_every=200", "--config.alignment_epochs=(0,)")
    out = restored.communicate(timeout=300)[0]
    self.assertEqual(restored.returncode, 0, out[-3000:])
    for log in root.glob("copy_paste/*.log"):  # each run checked its config and trained nothing
      self.assertIn("finished earlier", log.read_text(), log.name)
      self.assertNotRegex(log.read_text(), r"epoch \d+/100", log.name)
    self.assertEqual(list(csv.DictReader((root / "table1.csv").open())), rows)

  def test_adopts_the_finished_methods_of_an_earlier_run_whose_config_is_the_rows(self):
    tmp = pathlib.Path(self.tmp())
    (tmp / "tiny_table1.py").write_text(CONFIG.replace("c.num_epochs = 2", "c.num_epochs = 2\n  c.alignment_epochs = (0,)"))
    earlier = tmp / "earlier"  # bptt and e-prop at the shared recipe, trained together
    main = subprocess.run([sys.executable, "-m", "experiments.main", f"--config={tmp / 'tiny_table1.py'}",
                           f"--workdir={earlier}", "--config.methods=('bptt','eprop')", "--norecipes"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    self.assertEqual(main.returncode, 0, main.stderr[-3000:])
    root, kept = tmp / "table1", tmp / "kept"
    proc = self._table1("--tasks=copy_paste", f"--config=copy_paste={tmp / 'tiny_table1.py'}", f"--workdir={root}",
                        "--processes=2", "--methods=bptt,eprop", f"--keep={kept}", f"--adopt={earlier}")
    out = proc.communicate(timeout=600)[0]
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertIn("copy_paste / bptt: adopted from", out)
    self.assertIn("copy_paste / eprop (shared recipe): adopted from", out)
    # The tuned e-prop row's recipe is not the earlier run's: trained here.
    self.assertRegex(out, r"copy_paste / eprop: not adopted from \S+ \(config fields \['recipes.eprop'\] differ\)")
    logs = {p.stem: p.read_text() for p in root.glob("copy_paste/*.log")}
    for row in ("bptt", "eprop_shared_recipe"):
      self.assertIn("finished earlier", logs[row], row)
    self.assertRegex(logs["eprop"], r"epoch 2/2")
    for method, row in (("bptt", "bptt"), ("eprop", "eprop_shared_recipe")):
      self.assertEqual((root / "copy_paste" / row / method / "final.json").read_text(),
                       (earlier / method / "final.json").read_text(), row)
    rows = {r["row"]: r for r in csv.DictReader((root / "table1.csv").open())}
    self.assertEqual(sorted(rows), ["bptt", "eprop", "eprop (shared recipe)"])
    self.assertTrue(all(r["revisions"] for r in rows.values()), rows)

  def test_the_schedule_balances_by_length_and_runs_the_tuned_rows_first(self):
    # In a subprocess: experiments.table1 and experiments.tune (imported by test_tune) both define
    # absl's --config flag, and one process cannot import both.
    script = textwrap.dedent("""
        import json, pathlib
        from experiments import table1
        lengths = [("eprop", True, 150), ("tbptt", False, 100), ("tbptt", True, 100), ("eprop", False, 40),
                   ("readout", False, 20)]
        entries = [table1.Entry("copy_paste", m, shared, "spec", pathlib.Path(m), "r", t) for m, shared, t in lengths]
        print(json.dumps([[(e.row, e.shared_recipe, e.estimate_seconds) for e in slot]
                          for slot in table1.schedule(entries, 2)]))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    slots = json.loads(out.stdout)
    self.assertEqual(sorted(sum(t for _, _, t in s) for s in slots), [200, 210])  # longest first, greedy
    for slot in slots:  # within a process, no shared-recipe row before a tuned one
      shared = [flag for _, flag, _ in slot]
      self.assertEqual(shared, sorted(shared), slot)
    self.assertEqual([row for row, _, _ in slots[0]], ["eprop", "readout", "eprop (shared recipe)"])

  def test_a_rows_revisions_come_from_its_epochs_or_before_its_adoption(self):
    tmp = pathlib.Path(self.tmp())
    script = textwrap.dedent("""
        import json, pathlib, sys
        from experiments import checkpoints, table1
        run = pathlib.Path(sys.argv[1])
        (run / "bptt").mkdir(parents=True)
        entry = table1.Entry("copy_paste", "bptt", False, "spec", run, "shared", None)
        checkpoints.write_jsonl(run / "invocations.jsonl", [
            {"command": "c", "revision": "aaa"}, {"command": "c", "revision": "bbb"},
            {"command": "split", "revision": "ccc", "split_from": "x"}, {"command": "c", "revision": "ddd"}])
        checkpoints.write_jsonl(run / "bptt" / "timing.jsonl", [{"epoch": 0, "seconds": 1.0}])
        legacy = table1.trained_revisions(entry)
        checkpoints.write_jsonl(run / "bptt" / "timing.jsonl", [{"epoch": e, "seconds": 1.0, "revision": r}
                                                                 for e, r in enumerate(["eee", "eee", "fff"])])
        print(json.dumps([legacy, table1.trained_revisions(entry)]))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp / "run")], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    self.assertEqual(json.loads(out.stdout), [["aaa", "bbb"], ["eee", "fff"]])

  def test_bad_arguments_are_refused(self):
    out = self._table1("--tasks=copy_paste", "--methods=nope", "--dry_run",
                       "--config=copy_paste=experiments/copy_paste.py:tiny")
    text = out.communicate(timeout=300)[0]
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("--methods: ['nope'] are not in", text)
    out = self._table1("--tasks=copy_paste", "--dry_run", "--", "--num_epochs=3")
    text = out.communicate(timeout=300)[0]
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("arguments after -- must be config overrides", text)


if __name__ == "__main__":
  absltest.main()

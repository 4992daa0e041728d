"""tools.reproduce: gradients written twice compare equal; one flipped bit, a changed metric, a missing file
are each caught, with a non-zero exit and the tensor or value named."""
import contextlib
import io
import json
import pathlib
import shutil
import tempfile

import numpy as np
from absl.testing import absltest

from tools import reproduce

STEPS = 4
METHODS = ("bptt", "rhel_centered")


def run_main(*argv) -> tuple[int, str]:
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    status = reproduce.main([str(a) for a in argv])
  return status, out.getvalue()


def make_tmp(test: absltest.TestCase) -> pathlib.Path:
  # absltest's create_tempdir needs parsed absl flags, which pytest does not provide.
  d = tempfile.TemporaryDirectory()
  test.addCleanup(d.cleanup)
  return pathlib.Path(d.name)


class GradientsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.TemporaryDirectory()
    root = pathlib.Path(cls._dir.name)
    cls.a, cls.b = root / "a", root / "b"
    for out in (cls.a, cls.b):  # the second write reuses the compiled programs
      status, _ = run_main("gradients", "--out", out, "--steps", STEPS, "--problems", "bce_f32",
                           "--methods", ",".join(METHODS))
      assert status == 0

  @classmethod
  def tearDownClass(cls):
    cls._dir.cleanup()
    super().tearDownClass()

  def copy_of_b(self) -> pathlib.Path:
    c = make_tmp(self) / "c"
    shutil.copytree(self.b, c)
    return c

  def test_output_layout(self):
    manifest = json.loads((self.a / "manifest.json").read_text())
    self.assertEqual(manifest["methods"], list(METHODS))
    self.assertEqual(sorted(manifest["problems"]), ["bce_f32"])
    self.assertEqual(pathlib.Path(manifest["rhel_jax"]), reproduce.ROOT / "rhel_jax")
    with np.load(self.a / "bce_f32.npz", allow_pickle=False) as data:
      self.assertEqual(data["rhel_centered/grads/W"].dtype, np.float32)  # even though the tests run with x64
      self.assertEqual(data["problem/inputs"].shape, (8, STEPS, 5))
      self.assertEqual(data["rhel_centered/loss"].shape, ())
      self.assertEqual(set(np.unique(data["problem/targets"])), {0.0, 1.0})

  def test_two_writes_compare_equal(self):
    status, out = run_main("compare", self.a, self.b)
    self.assertEqual(status, 0, out)
    self.assertIn("OK: identical bits in all 2 (problem, method) pairs", out)

  def test_one_flipped_bit_is_caught_and_named(self):
    c = self.copy_of_b()
    path = c / "bce_f32.npz"
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
    w = arrays["rhel_centered/grads/W"].copy()
    w.view(np.uint32)[2, 3] ^= 1  # the lowest mantissa bit of one entry
    arrays["rhel_centered/grads/W"] = w
    np.savez(path, **arrays)
    status, out = run_main("compare", self.a, c)
    self.assertEqual(status, 1, out)
    self.assertIn("| bce_f32 | rhel_centered | grads/W | **1/256 differ; max abs", out)
    self.assertIn("max ulp 1**", out)
    self.assertNotIn("| bce_f32 | bptt |", out)  # the untouched method stays in the identical row
    self.assertIn("FAIL: 1 tensor(s) differ", out)

  def test_method_on_one_side_is_listed_not_failed(self):
    c = self.copy_of_b()
    path = c / "bce_f32.npz"
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files if not k.startswith("bptt/")}
    np.savez(path, **arrays)
    status, out = run_main("compare", self.a, c)
    self.assertEqual(status, 0, out)
    self.assertIn("| bce_f32 | bptt | * | only in A |", out)

  def test_nothing_in_common_fails(self):
    empty = make_tmp(self)
    status, out = run_main("compare", self.a, empty)
    self.assertEqual(status, 1, out)
    self.assertIn("only in A", out)


class UlpTest(absltest.TestCase):

  def test_ulp_distance(self):
    one = np.array([1.0], np.float32)
    self.assertEqual(reproduce.ulp_distance(one, np.nextafter(one, np.float32(2))), 1)
    tiny = np.array([np.finfo(np.float64).smallest_subnormal])
    self.assertEqual(reproduce.ulp_distance(-tiny, tiny), 2)
    self.assertIsNone(reproduce.compare_arrays(np.array([np.nan]), np.array([np.nan])))
    self.assertIn("float32[2] vs float64[2]", reproduce.compare_arrays(np.zeros(2, np.float32), np.zeros(2)))


class RunsTest(absltest.TestCase):

  def fake_workdir(self, root: pathlib.Path, *, loss=0.25, wall=12.0, timing=3.0) -> pathlib.Path:
    method = root / "bptt"
    method.mkdir(parents=True)
    rows = [{"epoch": 0, "seed": s, "train_loss": 0.5 + s, "test_loss": loss if s else 0.3,
             "test_acc_by_step": [0.5, float("nan")], "diverged": False} for s in range(2)]
    (method / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (method / "alignment.jsonl").write_text(json.dumps({"epoch": 0, "seed": 0, "cos_W": 0.99}) + "\n")
    (method / "final.json").write_text(json.dumps({"method": "bptt", "test_loss": [0.3, loss]}))
    (method / "timing.jsonl").write_text(json.dumps({"epoch": 0, "seconds": timing}) + "\n")
    (method / "checkpoint_4.msgpack").write_bytes(b"\x81\xa1W\x01")
    (root / "results.json").write_text(json.dumps([{"method": "bptt", "test_loss": [0.3, loss],
                                                    "wall_seconds": wall}]))
    (root / "results.md").write_text(f"wall time {wall}\n")
    return root

  def test_identical_runs_pass_despite_wall_times(self):
    tmp = make_tmp(self)
    a = self.fake_workdir(tmp / "a")
    b = self.fake_workdir(tmp / "b", wall=99.0, timing=7.0)
    (b / "bptt" / "checkpoint_2.msgpack").write_bytes(b"old")  # kept on one side only: listed, not failed
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 0, out)
    self.assertIn("| bptt/metrics.jsonl | identical (2 rows) |", out)
    self.assertIn("| bptt/checkpoint_4.msgpack | identical bytes", out)
    self.assertIn("| bptt/checkpoint_2.msgpack | only in B (not compared) |", out)
    self.assertNotIn("timing.jsonl", out)

  def test_changed_metric_is_caught_and_named(self):
    tmp = make_tmp(self)
    a = self.fake_workdir(tmp / "a")
    b = self.fake_workdir(tmp / "b", loss=float(np.nextafter(0.25, 1.0)))  # one ulp
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 1, out)
    self.assertIn("| bptt/metrics.jsonl | **1 value(s) differ**: [1] (epoch 0, seed 1).test_loss: 0.25 vs "
                  "0.25000000000000006 |", out)
    self.assertIn("| bptt/final.json | **1 value(s) differ**", out)
    self.assertIn("| results.json | **1 value(s) differ**", out)
    self.assertIn("FAIL: 3 file(s) differ", out)

  def test_changed_checkpoint_and_missing_file_are_caught(self):
    tmp = make_tmp(self)
    a = self.fake_workdir(tmp / "a")
    b = self.fake_workdir(tmp / "b")
    (b / "bptt" / "checkpoint_4.msgpack").write_bytes(b"\x81\xa1W\x02")
    (b / "bptt" / "alignment.jsonl").unlink()
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 1, out)
    self.assertIn("| bptt/checkpoint_4.msgpack | **bytes differ**", out)
    self.assertIn("| bptt/alignment.jsonl | **only in A** |", out)

  def test_keys_the_new_code_adds_are_listed_not_failed(self):
    tmp = make_tmp(self)
    a = self.fake_workdir(tmp / "a")
    b = self.fake_workdir(tmp / "b")
    rows = [json.loads(l) for l in (b / "bptt" / "metrics.jsonl").read_text().splitlines()]
    (b / "bptt" / "metrics.jsonl").write_text("".join(json.dumps({**r, "val_acc": 0.5}) + "\n" for r in rows))
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 1, out)  # without the option, a new key is a difference
    status, out = run_main("runs", a, b, "--new-keys", "val_.*")
    self.assertEqual(status, 0, out)
    self.assertIn("| bptt/metrics.jsonl | identical (2 rows); new in B: val_acc |", out)
    # A key only in A, or a changed value beside the new key, still fails.
    (b / "bptt" / "metrics.jsonl").write_text("".join(
        json.dumps({**{k: v for k, v in r.items() if k != "train_loss"}, "val_acc": 0.5}) + "\n" for r in rows))
    status, out = run_main("runs", a, b, "--new-keys", "val_.*|train_loss")
    self.assertEqual(status, 1, out)
    self.assertIn("train_loss: only in A", out)

  def test_orbax_checkpoints_are_compared_array_by_array_and_msgpack_ones_across_formats(self):
    import jax.numpy as jnp
    from flax import serialization
    from experiments import checkpoints
    tmp = make_tmp(self)
    state = {"params": {"W": jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)},
             "opt_state": ((), ({"count": jnp.zeros(2, jnp.int32)},)), "diverged": jnp.zeros(2, bool)}
    a, b, old = (self.fake_workdir(tmp / name) for name in ("a", "b", "old"))
    for root in (a, b, old):
      (root / "bptt" / "checkpoint_4.msgpack").unlink()
    for root in (a, b):  # the same arrays, saved at different times: the files' timestamps differ
      checkpoints.save_checkpoint(root / "bptt", 4, state)
      checkpoints.wait_until_finished()
    (old / "bptt" / "checkpoint_4.msgpack").write_bytes(serialization.to_bytes(state))  # the code before Orbax
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 0, out)
    self.assertIn("| bptt/checkpoint_4 | identical arrays (3) |", out)
    status, out = run_main("runs", old, a)
    self.assertEqual(status, 0, out)
    self.assertIn("| bptt/checkpoint_4.msgpack vs bptt/checkpoint_4 | identical arrays (3) |", out)
    # One ulp in one array is caught and named.
    shutil.rmtree(b / "bptt" / "checkpoint_4")
    nudged = {**state, "params": {"W": state["params"]["W"].at[1, 2].set(np.nextafter(np.float32(5), 6))}}
    checkpoints.save_checkpoint(b / "bptt", 4, nudged)
    checkpoints.wait_until_finished()
    status, out = run_main("runs", a, b)
    self.assertEqual(status, 1, out)
    self.assertIn("| bptt/checkpoint_4 | **1 array(s) differ: params/W: 1/6 differ; max abs 4.77e-07, max ulp 1** |",
                  out)

  def test_json_differences(self):
    self.assertEqual(reproduce.json_differences({"x": [1.0, float("nan")]}, {"x": [1.0, float("nan")]}), [])
    self.assertEqual(reproduce.json_differences({"x": 0.0}, {"x": -0.0}), [".x: 0.0 vs -0.0"])
    self.assertEqual(reproduce.json_differences({"x": 1}, {"x": 1.0}), [".x: 1 vs 1.0"])
    self.assertEqual(reproduce.json_differences([1, 2], [1]), [": length 2 vs 1"])


if __name__ == "__main__":
  absltest.main()

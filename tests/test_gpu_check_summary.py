"""benchmarks/gpu_check_summary: the protocol projection and the targets table from measured files."""
import json
import pathlib
import subprocess
import tempfile

from absl.testing import absltest

from benchmarks import gpu_check_summary as summary


def _write_timing(workdir: pathlib.Path, method: str, seconds):
  (workdir / method).mkdir(parents=True)
  (workdir / method / "timing.jsonl").write_text(
      "".join(json.dumps({"epoch": e, "seconds": s}) + "\n" for e, s in enumerate(seconds)))


class GpuCheckSummaryTest(absltest.TestCase):

  def test_projection_is_first_epoch_plus_median_later_epochs(self):
    with tempfile.TemporaryDirectory() as tmp:
      workdir = pathlib.Path(tmp)
      _write_timing(workdir, "bptt", [10.0, 1.0, 3.0, 2.0])     # median later epoch 2.0
      _write_timing(workdir, "rhel", [5.0, 0.5])
      rows, total = summary.protocol_projection(workdir, full_epochs=200)
      by_method = {r["method"]: r for r in rows}
      self.assertEqual(by_method["bptt"]["projected_s"], 10.0 + 199 * 2.0)
      self.assertEqual(by_method["rhel"]["projected_s"], 5.0 + 199 * 0.5)
      self.assertEqual(total, 408.0 + 104.5)
      _write_timing(workdir, "eprop", [7.0])  # one epoch: no projection for it, so none in all
      self.assertIsNone(summary.protocol_projection(workdir, full_epochs=200)[1])
      report, _ = summary.copy_paste_report(workdir, 200)
      self.assertIn("did not finish", report)
      self.assertIn("| eprop | 1 | 7.0 | - | - |", report)

  def test_targets_table_compares_the_measurements_with_the_targets(self):
    rows = [{"method": m, "T": 1000, "N": 64, "step_ms": ms}
            for m, ms in (("bptt", 30.0), ("rhel", 12.0), ("rhel_centered", 18.0), ("forward:pallas", 1.5),
                          ("rhel+pallas", None))]
    rows.append({"method": "rhel", "T": 400, "N": 64, "step_ms": 1.0})  # another configuration: ignored
    table = summary.targets_table(rows, protocol_s=700.0)
    self.assertIn("| rhel step / bptt step <= 0.5 | 0.40 | yes |", table)
    self.assertIn("| rhel_centered step / bptt step <= 0.5 | 0.60 | no |", table)
    self.assertIn("| rhel+pallas step / bptt step <= 0.5 | not measured | - |", table)
    self.assertIn("| fused forward kernel per time step <= 2.0 us | 1.50 us | yes |", table)
    self.assertIn("| full Copy-Paste protocol, projected <= 600 s | 700.00 s | no |", table)

  def test_gpu_check_script_parses(self):
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)


if __name__ == "__main__":
  absltest.main()

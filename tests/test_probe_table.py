"""The probe table's cross-validation grouping: runs named ``<setting>_val<k>`` become one row per
setting, with each fold's final value, their mean and the best epoch of the mean curve."""
import numpy as np
from absl.testing import absltest

from experiments import probe_table


def probe(name, curve, epochs=None, method="bptt"):
  curve = np.asarray(curve, float)
  return {"name": name, "method": method, "curve": curve, "epoch_list": list(range(len(curve))),
          "final": float(curve[-1]), "epochs_done": len(curve), "epochs": epochs or len(curve),
          "steps_per_epoch": 10, "revision": "abc",
          "command": f"python -m experiments.main --config.data.validation_speaker={name[-1]} --workdir=runs/{name}"}


class FoldGroupsTest(absltest.TestCase):

  def test_groups_folds_and_averages_their_curves(self):
    probes = [probe("a_val0", [0.2, 0.6, 0.4]), probe("a_val1", [0.4, 0.8, 0.8]), probe("a_val2", [0.3, 0.4, 0.3]),
              probe("single", [0.1, 0.2]), probe("b_val0", [0.5, 0.7], epochs=3)]
    groups = {g["setting"]: g for g in probe_table.fold_groups(probes)}
    self.assertEqual(sorted(groups), ["a", "b"])  # "single" is no fold
    a = groups["a"]
    self.assertEqual(a["folds"], [0, 1, 2])
    np.testing.assert_allclose(a["curve"], [0.3, 0.6, 0.5])
    self.assertAlmostEqual(a["mean_final"], 0.5)
    self.assertEqual(a["mean_best_epoch"], 2)  # the first epoch of the mean curve's maximum
    self.assertTrue(a["complete"])
    self.assertFalse(groups["b"]["complete"])
    self.assertIn("validation_speaker={k} --workdir=runs/a_val{k}", a["command"])
    text = probe_table.folds_markdown([a, groups["b"]])
    self.assertIn("0: 40.00, 1: 80.00, 2: 30.00 | 50.00 | 60.00 @ 2 |", text)
    self.assertIn("(unfinished)", text)


if __name__ == "__main__":
  absltest.main()

"""Seeds sharded over 4 (forced host) devices equal the single-device vmap.

JAX fixes its device count at start-up, so the 4-device run happens in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""
import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest

ROOT = pathlib.Path(__file__).parents[1]

SCRIPT = r"""
import json, sys, tempfile
import jax, numpy as np
from tests.test_experiments import tiny_config
from experiments import train
assert len(jax.devices()) == 4, jax.devices()
original, spans = train.shard_seeds, []
def spy(tree, mesh):  # records over how many devices the training state really lies
  tree = original(tree, mesh)
  spans.append(len(jax.tree.leaves(tree)[0].sharding.device_set))
  return tree
train.shard_seeds = spy
out = {"spans": spans}
for devices in (4, 1):
  with tempfile.TemporaryDirectory() as d:
    # No alignment probes: their programs add compile time and nothing to what is sharded.
    train.run_experiment(tiny_config(methods=("rhel_centered",), num_seeds=4, num_devices=devices,
                                     num_epochs=2, alignment_epochs=()), d)
    out[devices] = json.load(open(f"{d}/rhel_centered/final.json"))
try:
  train.run_experiment(tiny_config(num_seeds=5), tempfile.mkdtemp())
  out["error"] = None
except ValueError as e:
  out["error"] = str(e)
print("RESULT" + json.dumps(out))
"""


class ShardingTest(absltest.TestCase):

  def test_four_devices_match_one_device_and_uneven_seeds_are_refused(self):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip())
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    self.assertEqual(out["spans"], [4, 1])  # the state really lay on 4 devices, then on 1
    four, one = out["4"], out["1"]
    for key in ("test_bit_acc", "test_loss"):
      for a, b in zip(four[key], one[key]):
        self.assertAlmostEqual(a, b, delta=1e-4 * max(1.0, abs(b)), msg=key)
    self.assertIn("config.num_seeds=5 is not a multiple of the 4 device(s)", out["error"])


if __name__ == "__main__":
  absltest.main()

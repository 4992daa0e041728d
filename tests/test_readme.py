"""The README's examples run as written: the library's agrees with BPTT, and the trained-parameters one
reads a run's newest checkpoint."""
import pathlib
import re

import numpy as np
from absl.testing import absltest


class ReadmeTest(absltest.TestCase):

  def test_library_example_runs(self):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Library.*?```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    self.assertEqual(scope["ys"].shape, (8, 300, 3))
    for key, ref in scope["ref"].items():
      got = np.ravel(scope["grads"][key])
      cos = got @ np.ravel(ref) / (np.linalg.norm(got) * np.linalg.norm(ref))
      self.assertGreater(cos, 0.999999, key)


  def test_trained_parameters_example_reads_a_run(self):
    import tempfile
    from experiments import checkpoints, train
    from tests.test_experiments import tiny_config
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"\*\*Trained parameters\.\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    self.assertLessEqual(len(code.strip().splitlines()), 3)
    with tempfile.TemporaryDirectory() as workdir:
      config = tiny_config(methods=("rhel",), num_epochs=1, alignment_epochs=())
      train.run_experiment(config, workdir)
      scope = {}
      exec(compile(code.replace("runs/copy_paste_quick", workdir), "README.md", "exec"), scope)  # noqa: S102
      self.assertEqual(scope["epoch"], 1)
      self.assertEqual(scope["seed0"]["W"].shape, (8, 8))
      trainer = train.MethodTrainer(config, train.build_task(config, np.float32), "rhel", np.float32)
      _, state = checkpoints.restore_latest(f"{workdir}/rhel", trainer.init(train.seed_keys(config.seed, 2)[0]))
      for name, value in state["params"].items():
        np.testing.assert_array_equal(scope["params"][name], value, err_msg=name)


if __name__ == "__main__":
  absltest.main()

"""The README's library example runs as written and agrees with BPTT."""
import pathlib
import re

import numpy as np
from absl.testing import absltest


class ReadmeTest(absltest.TestCase):

  def test_library_example_runs(self):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    self.assertEqual(scope["ys"].shape, (8, 300, 3))
    for key, ref in scope["ref"].items():
      got = np.ravel(scope["grads"][key])
      cos = got @ np.ravel(ref) / (np.linalg.norm(got) * np.linalg.norm(ref))
      self.assertGreater(cos, 0.999999, key)


if __name__ == "__main__":
  absltest.main()

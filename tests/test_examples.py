"""The README's bring-your-own-model example trains, and RHEL follows BPTT there."""
from absl.testing import absltest

from examples import stacked_rnn


class StackedExampleTest(absltest.TestCase):

  def test_rhel_learns_like_bptt(self):
    runs = {m: stacked_rnn.train(m, steps=80, seq_len=30, width=16, log_every=1000) for m in ("bptt", "rhel_centered")}
    for method, out in runs.items():
      self.assertGreater(out["bit_acc"], 0.65, method)  # chance is 0.5
    # Same init and data; the echo's gradient equals BPTT's up to float32 round-off.
    self.assertAlmostEqual(runs["rhel_centered"]["bit_acc"], runs["bptt"]["bit_acc"], delta=0.02)


if __name__ == "__main__":
  absltest.main()

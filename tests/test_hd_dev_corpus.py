"""The real-speech dev corpus (``shared/data/fsdd_dev``, FSDD in HD's layout) through the HD pipeline,
on a copy of a few of its files: splits and shapes, bit-identical rebuilds, clear errors for a corrupt
or truncated FLAC with no half-written dataset left, and the ``dev`` config variant down to the task.

The corpus is found at ``$RHEL_JAX_SHARED/data/fsdd_dev``, else at ``<repo>/../shared/data/fsdd_dev``;
the corpus tests are skipped when neither exists.
"""
import functools
import os
import pathlib
import shutil
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from data import heidelberg_digits as hd
from data import hd_loader, synth_corpus
from experiments import hd_data, heidelberg_digits
from rhel_jax import losses

ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_dir() -> pathlib.Path:
  """The shared folder: ``$RHEL_JAX_SHARED``, else the ``shared`` folder beside the repository."""
  env = os.environ.get(heidelberg_digits.SHARED_ENV)
  return pathlib.Path(env).expanduser() if env else ROOT.parent / "shared"


DEV = shared_dir() / "data" / "fsdd_dev"
SKIP_REASON = (f"dev corpus not found at {DEV} (set {heidelberg_digits.SHARED_ENV} to the shared folder "
               "that holds data/fsdd_dev)")


@functools.lru_cache(maxsize=None)
def few_dev_files() -> pathlib.Path:
  """16 files of the dev corpus in its layout: speakers 00-02 x digits 0-3 from the training list
  (02 becomes the validation speaker), speaker 03 x digits 0-2 and one other speaker from the test list."""
  train = (DEV / "train_filenames.txt").read_text().split()
  test = (DEV / "test_filenames.txt").read_text().split()

  def first(names, speaker, digit):
    return next(n for n in names if (hd.parse_name(n)["speaker"], hd.parse_name(n)["digit"]) == (speaker, digit))

  picked_train = [first(train, s, d) for s in (0, 1, 2) for d in range(4)]
  picked_test = [first(test, 3, d) for d in range(3)] + [next(n for n in test if hd.parse_name(n)["speaker"] != 3)]
  root = pathlib.Path(tempfile.mkdtemp(prefix="fsdd_few_"))
  (root / "audio").mkdir()
  for n in picked_train + picked_test:
    shutil.copy(DEV / "audio" / n, root / "audio" / n)
  (root / "train_filenames.txt").write_text("".join(n + "\n" for n in picked_train))
  (root / "test_filenames.txt").write_text("".join(n + "\n" for n in picked_test))
  return root


class _Base(absltest.TestCase):

  def tmp(self) -> pathlib.Path:
    d = tempfile.TemporaryDirectory()
    self.addCleanup(d.cleanup)
    return pathlib.Path(d.name)

  def copy_of_few(self) -> pathlib.Path:
    dest = self.tmp() / "fsdd_few"
    shutil.copytree(few_dev_files(), dest)
    return dest


@absltest.skipUnless(DEV.exists(), SKIP_REASON)
class DevCorpusBuildTest(_Base):

  def test_splits_and_shapes(self):
    sources = hd.build(str(self.tmp()), str(few_dev_files())).as_data_source()
    sizes = {split: len(src) for split, src in sources.items()}
    self.assertEqual(sizes, {"train": 8, "validation": 4, "test": 4})
    speakers = {split: {int(src[i]["speaker"]) for i in range(len(src))} for split, src in sources.items()}
    self.assertEqual(speakers["train"], {0, 1})
    self.assertEqual(speakers["validation"], {2})        # the highest-numbered training speaker
    self.assertIn(3, speakers["test"])                   # the test-only speaker
    for src in sources.values():
      for i in range(len(src)):
        e = src[i]
        self.assertEqual(e["mel"].shape[1], 40)
        self.assertBetween(len(e["mel"]) * 0.010, 0.1, 2.0)  # a spoken digit at a 10 ms hop
        self.assertEqual(int(e["label"]), int(e["digit"]))   # English only: 10 classes
        self.assertEqual(e["language"], b"english")

  def test_leave_one_speaker_out_folds(self):
    # With no carved split, each training speaker in turn is the validation split of one fold; the
    # normalisation comes from the remaining speakers only, and the test split never changes.
    builder = hd.build(str(self.tmp()), str(few_dev_files()), num_validation_speakers=0)
    self.assertEqual({s: len(src) for s, src in builder.as_data_source().items()}, {"train": 12, "test": 4})
    whole = hd_loader.load_splits(builder)
    self.assertNotIn("validation", whole)
    for speaker in (0, 1, 2):
      fold = hd_loader.load_splits(builder, validation_speakers=(speaker,))
      self.assertEqual(set(fold["validation"].speakers.tolist()), {speaker})
      self.assertEqual(set(fold["train"].speakers.tolist()), {0, 1, 2} - {speaker})
      self.assertEqual((len(fold["train"]), len(fold["validation"])), (8, 4))
      valid = fold["train"].inputs[fold["train"].mask > 0]
      np.testing.assert_allclose(valid.mean(0), 0, atol=1e-3)   # standardised on this fold's training speakers
      np.testing.assert_array_equal(fold["test"].labels, whole["test"].labels)
    with self.assertRaisesRegex(ValueError, r"validation speaker\(s\) \[3\] are not training speakers"):
      hd_loader.load_splits(builder, validation_speakers=(3,))
    c = heidelberg_digits.get_config("dev").data
    c.validation_speaker, c.num_validation_speakers = 1, 1
    with self.assertRaisesRegex(ValueError, r"config\.data\.validation_speaker=1 .*num_validation_speakers=0"):
      hd_data.validate(c)
    c.num_validation_speakers, c.eval_split = 0, "validation"
    hd_data.validate(c)
    c.validation_speaker = -1
    with self.assertRaisesRegex(ValueError, "eval_split='validation' needs"):
      hd_data.validate(c)

  def test_building_twice_gives_identical_features(self):
    options = dict(cmvn="meanvar", deltas=2, time_downsample=2, trim_db=30.0)  # trim: the dev variant's
    a = hd_loader.load_splits(hd.build(str(self.tmp()), str(few_dev_files()), **options))
    b = hd_loader.load_splits(hd.build(str(self.tmp()), str(self.copy_of_few()), **options))
    for split in ("train", "validation", "test"):
      self.assertEqual(a[split].inputs.shape[2], 120)
      np.testing.assert_array_equal(a[split].inputs, b[split].inputs)
      np.testing.assert_array_equal(a[split].mask, b[split].mask)
      np.testing.assert_array_equal(a[split].labels, b[split].labels)

  def _assert_fails_cleanly_then_recovers(self, damage):
    source = self.copy_of_few()
    name = (source / "train_filenames.txt").read_text().split()[5]
    path = source / "audio" / name
    original = path.read_bytes()
    path.write_bytes(damage(original))
    data_dir = self.tmp()
    with self.assertRaisesRegex(hd.SourceError, f"{name}: (unreadable|truncated) audio"):
      hd.build(str(data_dir), str(source))
    # Nothing TFDS could take for a dataset: no version directory, complete or not.
    leftovers = [p for p in data_dir.glob("heidelberg_digits/*/*") if p.is_dir()]
    self.assertEqual(leftovers, [])
    # Once the file is mended, the same data_dir builds the whole dataset.
    path.write_bytes(original)
    sizes = {s: len(src) for s, src in hd.build(str(data_dir), str(source)).as_data_source().items()}
    self.assertEqual(sizes, {"train": 8, "validation": 4, "test": 4})

  def test_corrupt_flac(self):
    def corrupt(data):
      data = bytearray(data)
      for i in range(len(data) // 2, len(data), 97):  # frame data scrambled, header intact
        data[i] ^= 0xA5
      return bytes(data)
    self._assert_fails_cleanly_then_recovers(corrupt)

  def test_truncated_flac(self):
    self._assert_fails_cleanly_then_recovers(lambda data: data[: int(len(data) * 0.6)])

  def test_file_cut_at_a_frame_boundary_is_caught_by_its_length(self):
    """If the decoder returns fewer samples than the header declares, without an error, it is still caught."""
    source = few_dev_files()
    name = (source / "train_filenames.txt").read_text().split()[0]
    import soundfile as sf
    real_read = sf.read
    with mock.patch.object(sf, "read", lambda *a, **k: (lambda x: (x[0][: len(x[0]) // 2], x[1]))(
        real_read(*a, **k))):
      with self.assertRaisesRegex(hd.SourceError, f"{name}: truncated audio"):
        hd.log_mel(source / "audio" / name, hd.HDConfig())

  def test_dev_config_down_to_the_task(self):
    from experiments.tasks.heidelberg_digits import HeidelbergDigits
    c = heidelberg_digits.get_config("dev")
    c.data.manual_dir = str(few_dev_files())
    c.data.data_dir = str(self.tmp())
    c.data.deltas = 1
    c.data.cmvn = "meanvar"
    c.data.augment.time_stretch = 0.1
    c.data.augment.noise_std = 0.1
    c.batch_size, c.alignment_batch_size = 4, 4
    task = HeidelbergDigits.from_config(c, jnp.float32)
    self.assertIs(task.loss, losses.ce_max)  # the dev variant's pooling, chosen on the folds
    self.assertEqual((task.n_in, task.n_out), (80, 10))
    self.assertEqual(task.sizes, {"train": 12, "test": 4})  # all three training speakers train
    self.assertIsNone(task.validation_set(None))
    key = jax.random.key(0)
    step_batch = jax.jit(task.train_batch)
    batch = step_batch(task.train_data(), key, 3)
    again = step_batch(task.train_data(), key, 3)
    other = step_batch(task.train_data(), key, 4)
    for x, y in zip(batch, again):
      np.testing.assert_array_equal(x, y)
    self.assertEqual(batch[0].shape, (4, task.seq_len, 80))
    self.assertEqual(batch[0].dtype, jnp.float32)
    self.assertTrue(np.all(np.asarray(batch[0])[np.asarray(batch[2]) == 0] == 0))
    self.assertFalse(np.array_equal(batch[0], other[0]))
    self.assertLen(task.test_set(key)[1], 4)
    c.data.eval_split, c.data.validation_speaker = "validation", 2   # one fold: speaker 02 held out
    on_validation = HeidelbergDigits.from_config(c, jnp.float32)
    self.assertEqual(on_validation.sizes, {"train": 8, "test": 4, "validation": 4})
    self.assertEqual(set(np.asarray(on_validation.test_set(key)[1]).tolist()), {0, 1, 2, 3})  # speaker 02's digits


class DevConfigTest(_Base):

  def test_dev_reads_the_shared_folder_from_the_environment(self):
    shared = self.tmp()
    (shared / "data" / "fsdd_dev").mkdir(parents=True)
    (shared / "data" / "fsdd_dev" / "train_filenames.txt").write_text("")
    with mock.patch.dict(os.environ, {heidelberg_digits.SHARED_ENV: str(shared)}):
      c = heidelberg_digits.get_config("dev")
    self.assertEqual(c.data.manual_dir, str(shared / "data" / "fsdd_dev"))
    self.assertEqual(c.data.num_classes, 10)
    self.assertTrue(c.data.require_manual_dir)
    with mock.patch.dict(os.environ, {heidelberg_digits.SHARED_ENV: str(self.tmp())}):
      with self.assertRaisesRegex(ValueError, "RHEL_JAX_SHARED=.*does not hold the dev corpus"):
        heidelberg_digits.get_config("dev")

  def test_dev_without_a_source_is_a_clear_error(self):
    env = {k: v for k, v in os.environ.items() if k != heidelberg_digits.SHARED_ENV}
    with mock.patch.dict(os.environ, env, clear=True):
      c = heidelberg_digits.get_config("dev")
    self.assertIsNone(c.data.manual_dir)
    c.data.data_dir = str(self.tmp())
    with self.assertRaisesRegex(ValueError, r"config\.data\.manual_dir is not set.*RHEL_JAX_SHARED"):
      hd_data.load(c.data)

  def test_default_variants_keep_their_data_fields(self):
    quick = heidelberg_digits.get_config("quick").data
    self.assertEqual(hd_data.hd_config(quick).name, "sr16000_mel40_win25_hop10_ds2_val1")
    # The synthesiser's version is part of the name: the Debian espeak-ng 1.51 program's corpus
    # ("hd_standin_s12_t6_seed0") is never taken for this one.
    engine = synth_corpus.engine_tag()
    self.assertRegex(engine, r"^espeak\d+\.\d+")
    self.assertEqual(hd_data.standin_dir(quick).name, f"hd_standin_s12_t6_seed0_{engine}")
    self.assertEqual(quick.num_classes, 20)
    self.assertFalse(hd_data.augment.from_config(quick).active)
    hard = heidelberg_digits.get_config("hard").data
    self.assertEqual(hd_data.standin_dir(hard).name, f"hd_standin_s12_t6_seed0_many_snr5_rt0.5_pad300_gain10_{engine}")
    with self.assertRaisesRegex(ValueError, "unknown variant"):
      heidelberg_digits.get_config("tiny")

  def test_data_fields_are_validated_by_name(self):
    for path, value, pattern in (("cmvn", "on", r"config\.data\.cmvn must be one of"),
                                 ("deltas", 3, r"config\.data\.deltas must be 0, 1 or 2"),
                                 ("standin_voices", "all", r"config\.data\.standin_voices must be one of"),
                                 ("num_classes", 1, r"config\.data\.num_classes must be an int >= 2"),
                                 ("eval_split", "train", r"config\.data\.eval_split must be 'test' or")):
      c = heidelberg_digits.get_config("full")
      c.data[path] = value
      with self.assertRaisesRegex(ValueError, pattern):
        hd_data.validate(c.data)

  def test_pooling_is_validated_by_name(self):
    from experiments.tasks.heidelberg_digits import HeidelbergDigits
    c = heidelberg_digits.get_config("full")
    self.assertEqual(c.task.pooling, "mean")
    c.task.pooling = "median"
    with self.assertRaisesRegex(ValueError, r"config\.task\.pooling must be one of"):
      HeidelbergDigits.validate_config(c)

  def test_num_classes_below_the_labels_is_an_error(self):
    from tests.test_hd_data import tiny_corpus  # English and German labels (up to 12)
    c = heidelberg_digits.get_config("quick")
    c.data.manual_dir = str(tiny_corpus() / "layout")
    c.data.data_dir = str(self.tmp())
    c.data.num_classes = 10
    with self.assertRaisesRegex(ValueError, r"config\.data\.num_classes=10, but the \w+ split has label 1[0-2]"):
      hd_data.load(c.data)


if __name__ == "__main__":
  absltest.main()

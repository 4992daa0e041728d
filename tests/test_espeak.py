"""eSpeak NG from PyPI (data/espeak.py): no espeak-ng program, deterministic samples, every voice
the stand-in uses, and clear errors for a voice that does not exist."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from data import espeak, synth_corpus

ROOT = pathlib.Path(__file__).resolve().parents[1]
# (word, voice, speed, pitch): plain, Klatt, breathy (libc rand noise) and an accent with a variant.
CALLS = (("seven", "en+m1", 150, 50), ("fünf", "de+f2", 120, 30), ("seven", "en+klatt", 199, 74),
         ("three", "en-gb-scotland+whisper", 160, 40), ("null", "de+Alex", 80, 0))


def _digest(audio: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest()


# Run by a child process: the digests of CALLS, and a tiny corpus's files.
_CHILD = """
import hashlib, json, pathlib, sys
from data import synth_corpus
calls = json.loads(sys.argv[1])
out = pathlib.Path(sys.argv[2])
digests = [hashlib.sha256(synth_corpus.synthesize(*c)[0].tobytes()).hexdigest() for c in calls]
synth_corpus.write_corpus(out, speakers=2, trials=1, digits=range(2))
print(json.dumps(digests))
"""


class SynthesisTest(absltest.TestCase):

  def test_same_arguments_give_the_same_samples_in_any_order(self):
    first = [_digest(synth_corpus.synthesize(*c)[0]) for c in CALLS]
    # Reversed and repeated: a library loaded once would carry state from one word to the next.
    again = [_digest(synth_corpus.synthesize(*c)[0]) for c in reversed(CALLS * 2)]
    self.assertEqual(again, list(reversed(first * 2)))
    self.assertLen(set(first), len(CALLS))

  def test_another_process_with_no_espeak_program_on_its_path_gives_the_same_samples(self):
    empty = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, empty)
    self.assertIsNone(shutil.which("espeak-ng", path=empty))
    out = pathlib.Path(empty) / "corpus"
    env = dict(os.environ, PATH=empty)  # nothing to run: the interpreter is named by its full path
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CALLS), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertEqual(json.loads(proc.stdout), [_digest(synth_corpus.synthesize(*c)[0]) for c in CALLS])
    self.assertLen(list((out / "audio").iterdir()), 8)
    self.assertEqual(synth_corpus.read_metadata(out)["espeak_ng_version"], espeak.version())

  def test_synthesis_starts_no_process(self):
    def refuse(*args, **kwargs):
      raise AssertionError(f"a process was started: {args}")
    with mock.patch.object(subprocess, "Popen", refuse), mock.patch.object(shutil, "which", refuse), \
        mock.patch.object(os, "posix_spawn", refuse), mock.patch.object(os, "fork", refuse), \
        mock.patch.object(os, "system", refuse):
      audio, rate = synth_corpus.synthesize("one", "en+m3", 170, 60)
    self.assertEqual(rate, 22050)
    self.assertGreater(len(audio), rate // 10)

  def test_float_audio_is_the_16_bit_samples_over_32768(self):
    samples, rate = espeak.synthesize("four", "en+f1", 140, 55)
    audio, rate2 = synth_corpus.synthesize("four", "en+f1", 140, 55)
    self.assertEqual(samples.dtype, np.int16)
    self.assertEqual(audio.dtype, np.float32)
    self.assertEqual(rate, rate2)
    np.testing.assert_array_equal(audio, samples.astype(np.float64) / 32768)
    self.assertGreater(np.abs(audio).max(), 0.05)  # speech, not silence

  def test_voice_speed_and_pitch_change_the_sound(self):
    base = espeak.synthesize("two", "en", 150, 50)[0]
    for other in (("two", "en+f2", 150, 50), ("two", "en", 250, 50), ("two", "en", 150, 90)):
      self.assertNotEqual(_digest(espeak.synthesize(*other)[0]), _digest(base), other)
    self.assertLess(len(espeak.synthesize("two", "en", 300, 50)[0]), len(base))  # faster is shorter


class VoicesTest(absltest.TestCase):

  def test_every_voice_and_variant_of_the_stand_in_exists(self):
    for language in synth_corpus.EN_ACCENTS + tuple(synth_corpus.ESPEAK_LANG.values()):
      espeak.check_voice(language)
    for variant in sorted(set(synth_corpus.VARIANTS) | set(synth_corpus.MANY_VARIANTS)):
      self.assertIn(variant, espeak.variants())
      espeak.check_voice(f"en+{variant}")

  def test_a_missing_voice_is_a_clear_error_naming_it(self):
    for voice, pattern in (("en+m99", r"'en\+m99': no variant 'm99'"), ("xx+m1", r"'xx\+m1': no voice 'xx'"),
                           ("qq", r"'qq': no voice 'qq'")):
      with self.assertRaisesRegex(ValueError, pattern):
        espeak.check_voice(voice)
      with self.assertRaisesRegex(ValueError, pattern):
        synth_corpus.synthesize("one", voice, 150, 50)

  def test_a_corpus_with_a_missing_voice_fails_before_writing_audio(self):
    out = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, out)
    with mock.patch.object(synth_corpus, "VARIANTS", ("m1", "nonexistent")):
      with self.assertRaisesRegex(ValueError, r"'de\+nonexistent': no variant"):
        synth_corpus.write_corpus(out / "c", speakers=2, trials=1, digits=range(1))
    self.assertFalse((out / "c").exists())

  def test_speed_and_pitch_out_of_range_are_refused_by_name(self):
    for kwargs, pattern in ((dict(speed=79), "rate must be an int in"), (dict(pitch=100), "pitch must be an int in"),
                            (dict(speed=150.0), "rate must be an int in")):
      args = dict(word="one", voice="en", speed=150, pitch=50) | kwargs
      with self.assertRaisesRegex(ValueError, pattern):
        synth_corpus.synthesize(**args)


if __name__ == "__main__":
  absltest.main()

"""Offline stand-in for Heidelberg Digits: eSpeak NG digits written in HD's exact layout.

    python -m data.synth_corpus --out=/tmp/hd_standin            # 12 voices x 2 languages x 10 digits x 6 trials
    python -m data.synth_corpus --out=/tmp/hd_standin --archive  # also pack hd_audio.tar.gz + md5sums.txt
    python -m data.synth_corpus --out=/tmp/hd_hard --hard        # the harder variant (``HARD`` below)

Layout (as the official archive)::

    audio/lang-{english|german}_speaker-{NN}_trial-{T}_digit-{D}.flac   (48 kHz, 16-bit mono)
    train_filenames.txt, test_filenames.txt
    synth_corpus.json   (not in HD: the eSpeak NG version and the arguments that made the corpus)

The speech comes from the eSpeak NG library that the ``espeakng-loader`` package installs
(``data/espeak.py``), never from an ``espeak-ng`` program; its version names the corpus
(``engine_tag``), since another version speaks differently.

Voices play the speakers: speaker NN speaks English with ``en+<variant>`` and German with
``de+<variant>``; every trial draws its own speed (words per minute) and pitch (0-99). As in HD,
speakers 4 and 5 are test-only and about 5 % of every other speaker's recordings go to test.

The corpus is synthetic: every "speaker" is an eSpeak NG formant voice, far more uniform than
people. A ``Style`` makes it harder, each option off by default (the default corpus is the
basic one, bit for bit): more distinct voices (``voices="many"``: per speaker an English accent
and one of 76 eSpeak NG variants, plus a speaker-wide speed and pitch offset), random silence
around each word, reverberation (a synthetic exponentially decaying impulse response per speaker,
i.e. per "room"), additive white noise at a random SNR, and a random gain. Every random choice is
drawn from generators seeded by (seed, speaker, ...), so a corpus is a function of its arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import re
import shutil
import tarfile
from typing import Optional

import numpy as np

from data import espeak

WORDS = {
    "english": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "german": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
}
ESPEAK_LANG = {"english": "en", "german": "de"}
LANGUAGES = ("english", "german")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt")
TEST_SPEAKERS = (4, 5)
SAMPLE_RATE = 48000
METADATA_FILE = "synth_corpus.json"
# For voices="many": English accents, and eSpeak NG variants (``espeak-ng --voices=variant``) that
# sound like voices rather than robots. ("Mr serious" was "Mr" until the variants were checked: no
# such variant, which eSpeak NG ignores without an error; seed 0's 12 speakers never drew it.)
EN_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
              "en-us-nyc")
MANY_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
    "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "Gene", "gustave",
    "Henrique", "Hugo", "iven", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario",
    "max", "Michael", "michel", "miguel", "Mike", "Mr serious", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "steph", "Storm", "zac", "anika", "grandpa", "grandma", "norbert", "sandro", "shelby", "travis",
    "victor", "whisper", "whisperf", "croak")
VOICE_SETS = ("basic", "many")


@dataclasses.dataclass(frozen=True)
class Style:
  """How hard the stand-in is. The defaults give the basic corpus, bit for bit.

  voices: "basic" (speaker NN uses ``VARIANTS[NN]``) or "many" (speaker NN: a random English accent
    from ``EN_ACCENTS`` and a distinct variant from ``MANY_VARIANTS``, and a speaker-wide speed offset
    in [-40, 40] words/min and pitch offset in [-20, 20] added to every trial's own draw).
  noise_snr_db: None (clean), or white noise at an SNR drawn per utterance from
    [noise_snr_db, noise_snr_db + 10] dB (relative to the word's RMS).
  reverb_rt60: 0 (dry), or each speaker's "room" gets an RT60 drawn from [reverb_rt60 / 2, reverb_rt60] s
    and a direct-to-reverberant ratio from [0, 6] dB: the word is convolved with that impulse response
    (a direct path plus exponentially decaying Gaussian noise).
  pad_ms: 0, or silence of up to ``pad_ms`` ms (uniform) added before and after each word.
  gain_db: 0, or a gain drawn per utterance from [-gain_db, gain_db] dB.
  """
  voices: str = "basic"
  noise_snr_db: Optional[float] = None
  reverb_rt60: float = 0.0
  pad_ms: float = 0.0
  gain_db: float = 0.0

  def __post_init__(self):
    if self.voices not in VOICE_SETS:
      raise ValueError(f"Style.voices must be one of {list(VOICE_SETS)}, got {self.voices!r}")
    if self.noise_snr_db is not None and (isinstance(self.noise_snr_db, bool) or not isinstance(
        self.noise_snr_db, (int, float)) or not np.isfinite(self.noise_snr_db)):
      raise ValueError(f"Style.noise_snr_db must be None or a finite number (dB), got {self.noise_snr_db!r}")
    for name, top in (("reverb_rt60", 5.0), ("pad_ms", 5000.0), ("gain_db", 40.0)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        raise ValueError(f"Style.{name} must be a number in [0, {top:g}], got {value!r}")

  @property
  def is_basic(self) -> bool:
    return self == Style()

  def tag(self) -> str:
    """A short name of the non-default options ("" for the defaults), for cache directories."""
    parts = [f"{self.voices}"] if self.voices != "basic" else []
    parts += [f"snr{self.noise_snr_db:g}"] if self.noise_snr_db is not None else []
    parts += [f"rt{self.reverb_rt60:g}"] if self.reverb_rt60 else []
    parts += [f"pad{self.pad_ms:g}"] if self.pad_ms else []
    parts += [f"gain{self.gain_db:g}"] if self.gain_db else []
    return "_".join(parts)


# A first guess at a stand-in that is not saturated; tune it by measurement (docs/hd_features.md).
HARD = Style(voices="many", noise_snr_db=5.0, reverb_rt60=0.5, pad_ms=300.0, gain_db=10.0)


def hd_filename(language: str, speaker: int, trial: int, digit: int) -> str:
  return f"lang-{language}_speaker-{speaker:02d}_trial-{trial}_digit-{digit}.flac"


def synthesize(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
  """One utterance from eSpeak NG (``espeak.synthesize``): float32 mono in [-1, 1), shape (n,), and
  its sample rate (22050 Hz). Scaled as a 16-bit WAV reads as float: int16 / 32768."""
  audio, rate = espeak.synthesize(word, voice, speed, pitch)
  return audio.astype(np.float32) / np.float32(32768), rate


def engine_tag() -> str:
  """The synthesiser in a directory name, e.g. 'espeak1.52.0': caches of the stand-in carry it."""
  return "espeak" + re.sub(r"[^0-9A-Za-z.-]", "_", espeak.version())


def _speaker_voice(language: str, speaker: int, seed: int, style: Style) -> tuple[str, int, int]:
  """(espeak-ng voice, speed offset, pitch offset) of one speaker."""
  if style.voices == "basic":
    return f"{ESPEAK_LANG[language]}+{VARIANTS[speaker]}", 0, 0
  rng = np.random.default_rng([seed, 1, speaker])
  variant = MANY_VARIANTS[np.random.default_rng([seed, 1]).permutation(len(MANY_VARIANTS))[speaker]]
  accent = EN_ACCENTS[int(rng.integers(len(EN_ACCENTS)))]
  speed, pitch = int(rng.integers(-40, 41)), int(rng.integers(-20, 21))
  return f"{accent if language == 'english' else ESPEAK_LANG[language]}+{variant}", speed, pitch


def room_response(rng: np.random.Generator, rt60: float, rate: int) -> np.ndarray:
  """A synthetic room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB
  over a time drawn from [rt60 / 2, rt60] s, scaled to a direct-to-reverberant ratio in [0, 6] dB."""
  t60 = rng.uniform(rt60 / 2, rt60)
  drr_db = rng.uniform(0.0, 6.0)
  n = max(int(t60 * rate), 2)
  tail = rng.standard_normal(n - 1) * np.exp(-6.908 * np.arange(1, n) / (t60 * rate))
  tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
  return np.concatenate([[1.0], tail])


def degrade(audio: np.ndarray, rate: int, rng: np.random.Generator, room: Optional[np.ndarray],
            style: Style) -> np.ndarray:
  """Applies ``style``'s silence padding, reverberation, gain and noise (in that order) to one word."""
  from scipy import signal
  audio = np.asarray(audio, np.float64)
  rms = np.sqrt(np.mean(audio ** 2)) + 1e-12  # of the word alone, before padding
  if style.pad_ms:
    before, after = (int(rng.uniform(0, style.pad_ms) * rate / 1000) for _ in range(2))
    audio = np.pad(audio, (before, after))
  if room is not None:
    peak = np.max(np.abs(audio))
    audio = signal.fftconvolve(audio, room)
    audio *= peak / (np.max(np.abs(audio)) + 1e-12)
  if style.gain_db:
    gain = 10 ** (rng.uniform(-style.gain_db, style.gain_db) / 20)
    audio, rms = audio * gain, rms * gain
  if style.noise_snr_db is not None:
    snr_db = rng.uniform(style.noise_snr_db, style.noise_snr_db + 10)
    audio = audio + rng.standard_normal(audio.shape) * rms * 10 ** (-snr_db / 20)
  return audio.astype(np.float32)


def write_corpus(out: pathlib.Path, *, speakers: int = 12, trials: int = 6, seed: int = 0,
                 test_fraction: float = 0.05, digits=range(10), style: Style = Style()) -> dict[str, int]:
  """Writes the corpus under ``out``; returns the split sizes. ``style`` makes it harder (``Style``)."""
  import soundfile as sf
  import soxr
  limit = len(VARIANTS) if style.voices == "basic" else len(MANY_VARIANTS)
  if not 1 <= speakers <= limit:
    raise ValueError(f"speakers must be in [1, {limit}] for voices={style.voices!r}, got {speakers}")
  voices = {_speaker_voice(language, speaker, seed, style)[0] for speaker in range(speakers) for language in LANGUAGES}
  for voice in sorted(voices):  # all of them before any audio is written
    espeak.check_voice(voice)
  out = pathlib.Path(out)
  (out / "audio").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  train, test = [], []
  for speaker in range(speakers):
    rooms = {}  # the speaker's "room" (by sample rate): the same for both languages and every trial
    for language in ("english", "german"):
      voice, speed_offset, pitch_offset = _speaker_voice(language, speaker, seed, style)
      for digit in digits:
        for trial in range(trials):
          # Drawn exactly as in the basic corpus, so the speeds, pitches and splits stay the same.
          speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
          speed, pitch = int(np.clip(speed + speed_offset, 80, 450)), int(np.clip(pitch + pitch_offset, 0, 99))
          audio, rate = synthesize(WORDS[language][digit], voice, speed, pitch)
          if not style.is_basic:
            if style.reverb_rt60 and rate not in rooms:
              rooms[rate] = room_response(np.random.default_rng([seed, 2, speaker]), style.reverb_rt60, rate)
            room = rooms.get(rate)
            utt_rng = np.random.default_rng([seed, 3, speaker, LANGUAGES.index(language), digit, trial])
            audio = degrade(audio, rate, utt_rng, room, style)
          audio = soxr.resample(audio, rate, SAMPLE_RATE)
          name = hd_filename(language, speaker, trial, digit)
          sf.write(out / "audio" / name, np.clip(audio, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
          held_out = speaker in TEST_SPEAKERS or rng.random() < test_fraction
          (test if held_out else train).append(name)
  (out / "train_filenames.txt").write_text("".join(n + "\n" for n in train))
  (out / "test_filenames.txt").write_text("".join(n + "\n" for n in test))
  metadata = {"synthesiser": "eSpeak NG (libespeak-ng from the espeakng-loader package)",
              "espeak_ng_version": espeak.version(), "espeakng_loader_version": espeak.loader_version(),
              "speakers": speakers, "trials": trials, "seed": seed, "test_fraction": test_fraction,
              "digits": [int(d) for d in digits], "style": dataclasses.asdict(style),
              "train": len(train), "test": len(test)}
  (out / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n")
  return {"train": len(train), "test": len(test)}


def read_metadata(root: pathlib.Path) -> dict:
  """The ``synth_corpus.json`` that ``write_corpus`` left in ``root``; a clear error if it is missing."""
  path = pathlib.Path(root) / METADATA_FILE
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a stand-in corpus's metadata ({e})") from None


def pack_archive(root: pathlib.Path, archive: pathlib.Path) -> str:
  """Packs ``root`` as the official ``hd_audio.tar.gz`` and writes ``md5sums.txt`` beside it."""
  archive = pathlib.Path(archive)
  with tarfile.open(archive, "w:gz") as tar:
    for name in ("audio", "train_filenames.txt", "test_filenames.txt"):
      tar.add(pathlib.Path(root) / name, arcname=name)
  digest = hashlib.md5(archive.read_bytes()).hexdigest()
  (archive.parent / "md5sums.txt").write_text(f"{digest}  {archive.name}\n")
  return digest


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, type=pathlib.Path)
  parser.add_argument("--speakers", type=int, default=12)
  parser.add_argument("--trials", type=int, default=6)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--archive", action="store_true", help="also write hd_audio.tar.gz and md5sums.txt")
  parser.add_argument("--hard", action="store_true", help="start from the HARD style (the options below override it)")
  parser.add_argument("--voices", choices=VOICE_SETS)
  parser.add_argument("--noise_snr_db", type=float)
  parser.add_argument("--reverb_rt60", type=float)
  parser.add_argument("--pad_ms", type=float)
  parser.add_argument("--gain_db", type=float)
  args = parser.parse_args()
  overrides = {k: getattr(args, k) for k in ("voices", "noise_snr_db", "reverb_rt60", "pad_ms", "gain_db")
               if getattr(args, k) is not None}
  style = dataclasses.replace(HARD if args.hard else Style(), **overrides)
  if args.out.exists() and any(args.out.iterdir()):
    raise SystemExit(f"--out {args.out} exists and is not empty")
  staging = args.out.with_name(args.out.name + ".partial")
  shutil.rmtree(staging, ignore_errors=True)
  sizes = write_corpus(staging, speakers=args.speakers, trials=args.trials, seed=args.seed, style=style)
  if args.archive:
    pack_archive(staging, staging / "hd_audio.tar.gz")
  staging.replace(args.out) if not args.out.exists() else (args.out.rmdir(), staging.replace(args.out))
  print(f"wrote {args.out}: {sizes['train']} train / {sizes['test']} test files")


if __name__ == "__main__":
  main()

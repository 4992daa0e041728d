"""Offline stand-in for Heidelberg Digits: espeak-ng digits written in HD's exact layout.

    python -m data.synth_corpus --out=/tmp/hd_standin            # 12 voices x 2 languages x 10 digits x 6 trials
    python -m data.synth_corpus --out=/tmp/hd_standin --archive  # also pack hd_audio.tar.gz + md5sums.txt

Layout (as the official archive)::

    audio/lang-{english|german}_speaker-{NN}_trial-{T}_digit-{D}.flac   (48 kHz, 16-bit mono)
    train_filenames.txt, test_filenames.txt

Voices play the speakers: speaker NN speaks English with ``en+<variant>`` and German with
``de+<variant>``; every trial draws its own speed (-s) and pitch (-p). As in HD, speakers 4 and 5
are test-only and about 5 % of every other speaker's recordings go to test.
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

import numpy as np

WORDS = {
    "english": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "german": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
}
ESPEAK_LANG = {"english": "en", "german": "de"}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt")
TEST_SPEAKERS = (4, 5)
SAMPLE_RATE = 48000


def hd_filename(language: str, speaker: int, trial: int, digit: int) -> str:
  return f"lang-{language}_speaker-{speaker:02d}_trial-{trial}_digit-{digit}.flac"


def synthesize(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
  """One utterance from espeak-ng as float32 mono and its sample rate (22050 Hz)."""
  import soundfile as sf
  with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
    try:
      subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav.name, word],
                     check=True, capture_output=True)
    except FileNotFoundError as e:
      raise RuntimeError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)") from e
    audio, rate = sf.read(wav.name, dtype="float32")
  return audio, rate


def write_corpus(out: pathlib.Path, *, speakers: int = 12, trials: int = 6, seed: int = 0,
                 test_fraction: float = 0.05, digits=range(10)) -> dict[str, int]:
  """Writes the corpus under ``out``; returns the split sizes."""
  import soundfile as sf
  import soxr
  if not 1 <= speakers <= len(VARIANTS):
    raise ValueError(f"speakers must be in [1, {len(VARIANTS)}], got {speakers}")
  out = pathlib.Path(out)
  (out / "audio").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  train, test = [], []
  for speaker in range(speakers):
    for language in ("english", "german"):
      voice = f"{ESPEAK_LANG[language]}+{VARIANTS[speaker]}"
      for digit in digits:
        for trial in range(trials):
          speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
          audio, rate = synthesize(WORDS[language][digit], voice, speed, pitch)
          audio = soxr.resample(audio, rate, SAMPLE_RATE)
          name = hd_filename(language, speaker, trial, digit)
          sf.write(out / "audio" / name, np.clip(audio, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
          held_out = speaker in TEST_SPEAKERS or rng.random() < test_fraction
          (test if held_out else train).append(name)
  (out / "train_filenames.txt").write_text("".join(n + "\n" for n in train))
  (out / "test_filenames.txt").write_text("".join(n + "\n" for n in test))
  return {"train": len(train), "test": len(test)}


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
  args = parser.parse_args()
  if args.out.exists() and any(args.out.iterdir()):
    raise SystemExit(f"--out {args.out} exists and is not empty")
  staging = args.out.with_name(args.out.name + ".partial")
  shutil.rmtree(staging, ignore_errors=True)
  sizes = write_corpus(staging, speakers=args.speakers, trials=args.trials, seed=args.seed)
  if args.archive:
    pack_archive(staging, staging / "hd_audio.tar.gz")
  staging.replace(args.out) if not args.out.exists() else (args.out.rmdir(), staging.replace(args.out))
  print(f"wrote {args.out}: {sizes['train']} train / {sizes['test']} test files")


if __name__ == "__main__":
  main()

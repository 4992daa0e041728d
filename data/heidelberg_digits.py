"""TFDS builder for Heidelberg Digits (HD, Cramer et al. 2022), audio version, as log-mel features.

The source is the official ``hd_audio.tar.gz`` (``audio/lang-{english|german}_speaker-NN_trial-T_digit-D.flac``
plus ``train_filenames.txt`` / ``test_filenames.txt``), taken from ``source_dir`` or TFDS's
``manual_dir`` (the archive, or the extracted layout), or downloaded from the official address by
TFDS's download manager (retries, a cache, checksums recorded on the first verified download).
Writes ``array_record`` (no TensorFlow needed); read back with ``builder.as_data_source()``.

Splits: ``train`` and ``test`` from the official lists (speaker-held-out), and ``validation``
carved from ``train`` by speaker (the ``num_validation_speakers`` highest-numbered training
speakers that also appear in no test-only role).

Build in Python::

    builder = HeidelbergDigits(data_dir="~/tensorflow_datasets", source_dir="/path/with/hd_audio.tar.gz",
                               config=HDConfig(n_mels=40, hop_ms=10.0))
    builder.download_and_prepare(file_format="array_record")
    train = builder.as_data_source()["train"]     # random access, numpy dicts
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re
import shutil
import tarfile
import tempfile
from typing import Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

ARCHIVE_NAME = "hd_audio.tar.gz"
# Official location (Zenke lab) and its mirror; md5sums.txt sits beside the archive.
OFFICIAL_URLS = ("https://zenkelab.org/datasets/hd_audio.tar.gz",
                 "https://compneuro.net/datasets/hd_audio.tar.gz")
# TFDS's record (url, size, sha256) of the first verified download, in the download directory.
RECORDED_CHECKSUMS = "hd_audio_checksums.tsv"
FILENAME = re.compile(r"^lang-(english|german)_speaker-(\d+)_trial-(\d+)_digit-(\d)\.flac$")
LANGUAGES = ("english", "german")


class SourceError(ValueError):
  """Bad source data: a clear message that names the file."""


CMVN_MODES = ("none", "mean", "meanvar")


@dataclasses.dataclass
class HDConfig(tfds.core.BuilderConfig):
  """Feature settings; each combination is cached under its own config name (set from the fields).

  The pipeline per file: read -> resample to ``sample_rate`` -> optional silence trim (``trim_db``)
  -> ``n_mels`` log-mel bands between ``f_min`` and ``f_max`` (power optionally floored at the
  utterance's peak - ``top_db``) -> optional per-utterance CMVN
  (``cmvn``) -> optional deltas (``deltas``) appended -> average-pool ``time_downsample`` frames.
  Stored rows hold ``n_mels * (1 + deltas)`` values: statics, then deltas, then delta-deltas.
  """
  name: str = ""
  sample_rate: int = 16000        # audio is resampled to this rate before the features
  n_mels: int = 40
  win_ms: float = 25.0
  hop_ms: float = 10.0
  time_downsample: int = 1        # average-pool this many frames into one step
  num_validation_speakers: int = 1
  expected_sample_rate: Optional[int] = None  # if set, any file at another rate is an error
  # Speaker-robust options; the defaults reproduce the features as they were before they existed.
  cmvn: str = "none"              # per-utterance normalisation of each band over time: "mean" or "meanvar"
  deltas: int = 0                 # 0, 1 (+ deltas) or 2 (+ deltas and delta-deltas), librosa.feature.delta
  delta_width: int = 9            # odd frame count of the delta filter (used only when deltas > 0)
  trim_db: float = 0.0            # > 0: trim leading/trailing audio quieter than peak - trim_db (librosa)
  f_min: float = 0.0              # lowest mel frequency (Hz)
  f_max: float = 0.0              # highest mel frequency (Hz); 0 = sample_rate / 2
  top_db: float = 0.0             # > 0: floor each utterance's mel power at its peak - top_db (librosa's
                                  # power_to_db top_db), so near-silent bands become constant

  def __post_init__(self):
    for name in ("sample_rate", "n_mels", "time_downsample"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"HDConfig.{name} must be a positive int, got {value!r}")
    if not (self.win_ms > 0 and self.hop_ms > 0):
      raise ValueError(f"HDConfig.win_ms and hop_ms must be > 0, got {self.win_ms}, {self.hop_ms}")
    if self.cmvn not in CMVN_MODES:
      raise ValueError(f"HDConfig.cmvn must be one of {list(CMVN_MODES)}, got {self.cmvn!r}")
    if isinstance(self.deltas, bool) or self.deltas not in (0, 1, 2):
      raise ValueError(f"HDConfig.deltas must be 0, 1 or 2, got {self.deltas!r}")
    if (isinstance(self.delta_width, bool) or not isinstance(self.delta_width, int) or self.delta_width < 3
        or self.delta_width % 2 == 0):
      raise ValueError(f"HDConfig.delta_width must be an odd int >= 3, got {self.delta_width!r}")
    for name in ("trim_db", "f_min", "f_max", "top_db"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"HDConfig.{name} must be a number >= 0, got {value!r}")
    top = self.f_max or self.sample_rate / 2
    if top > self.sample_rate / 2:
      raise ValueError(f"HDConfig.f_max={self.f_max} is above the Nyquist frequency of "
                       f"HDConfig.sample_rate={self.sample_rate}")
    if self.f_min >= top:
      raise ValueError(f"HDConfig.f_min={self.f_min} must be below HDConfig.f_max ({top:g} Hz)")
    if not self.name:
      # Fields added later appear only when not at their default, so older caches keep their names.
      self.name = (f"sr{self.sample_rate}_mel{self.n_mels}_win{self.win_ms:g}_hop{self.hop_ms:g}"
                   f"_ds{self.time_downsample}_val{self.num_validation_speakers}"
                   + (f"_expect{self.expected_sample_rate}" if self.expected_sample_rate else "")
                   + (f"_cmvn{self.cmvn}" if self.cmvn != "none" else "")
                   + (f"_delta{self.deltas}w{self.delta_width}" if self.deltas else "")
                   + (f"_trim{self.trim_db:g}" if self.trim_db else "")
                   + (f"_fmin{self.f_min:g}" if self.f_min else "")
                   + (f"_fmax{self.f_max:g}" if self.f_max else "")
                   + (f"_top{self.top_db:g}" if self.top_db else ""))
    if not self.description:
      self.description = "log-mel features of the HD audio"

  @property
  def num_features(self) -> int:
    """Values per stored frame: the static bands, then each order of deltas."""
    return self.n_mels * (1 + self.deltas)


def md5_of(path: pathlib.Path) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def parse_md5sums(text: str, name: str = ARCHIVE_NAME) -> Optional[str]:
  for line in text.splitlines():
    parts = line.split()
    if len(parts) == 2 and parts[1].lstrip("*").endswith(name):
      return parts[0].lower()
  return None


def fetch_official(download_dir: pathlib.Path, urls: Sequence[str] = OFFICIAL_URLS) -> pathlib.Path:
  """``hd_audio.tar.gz`` through TFDS's download manager, from the first address that works; returns
  the archive's path in TFDS's download cache under ``download_dir``.

  TFDS retries each address (connection errors and server errors) and reuses a finished download.
  The first download is checked against the ``md5sums.txt`` published beside the archive; its
  size and sha256 are then recorded in ``download_dir/hd_audio_checksums.tsv`` (TFDS's checksums
  format), and the archive is checked against that record on every later run, cached or
  downloaded again. A download that fails a check is removed, and a :class:`SourceError` names
  the file and both checksums.
  """
  checksums = tfds.download.checksums
  download_dir = pathlib.Path(download_dir)
  record = download_dir / RECORDED_CHECKSUMS
  recorded = checksums.load_url_infos(record) if record.exists() else {}
  # The record is not handed to the manager as url_infos: TFDS merges those into its process-wide
  # registry, where they would outlive this download directory.
  manager = tfds.download.DownloadManager(download_dir=download_dir)
  errors = []
  for url in urls:
    try:
      archive = pathlib.Path(manager.download(url))
    except Exception as e:  # requests' and TFDS's errors for an address that does not answer
      errors.append(f"{url}: {type(e).__name__}: {e}")
      continue
    got = dataclasses.replace(checksums.compute_url_info(archive), filename=ARCHIVE_NAME)
    if url in recorded:
      if got != recorded[url]:
        _discard_download(download_dir, url, archive)
        want = recorded[url]
        raise SourceError(f"{ARCHIVE_NAME} from {url}: checksum mismatch: {int(got.size)} bytes, sha256 "
                          f"{got.checksum}; {record} recorded {int(want.size)} bytes, sha256 {want.checksum} on the "
                          "first download. The download was removed, run again")
      return archive
    sums_url = url.rsplit("/", 1)[0] + "/md5sums.txt"
    try:
      published = parse_md5sums(pathlib.Path(manager.download(sums_url)).read_text())
    except Exception as e:
      _discard_download(download_dir, url, archive)
      raise SourceError(f"could not download {sums_url} to verify {ARCHIVE_NAME} ({type(e).__name__}: {e}); "
                        "run again, or download both by hand and set manual_dir") from e
    actual = md5_of(archive)
    if published != actual:
      _discard_download(download_dir, url, archive)
      _discard_download(download_dir, sums_url)
      said = f"says {published}" if published else f"has no line for {ARCHIVE_NAME}"
      raise SourceError(f"{ARCHIVE_NAME} from {url}: checksum mismatch: md5 {actual}, {sums_url} {said}; "
                        "the download was removed, run again")
    checksums.save_url_infos(record, {url: got})
    return archive
  raise SourceError(f"could not download {ARCHIVE_NAME}:\n  " + "\n  ".join(errors))


def _discard_download(download_dir: pathlib.Path, url: str, path: Optional[pathlib.Path] = None) -> None:
  """Removes what TFDS's cache holds for ``url`` (``path``, or the file it names after the address)
  and its ``.INFO`` record, so that the next run downloads it again."""
  resource = tfds.download.resource
  for p in {download_dir / resource.get_dl_fname(url), *([path] if path else [])}:
    p.unlink(missing_ok=True)
    resource.get_info_path(p).unlink(missing_ok=True)


def extract(archive: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  """Extracts the archive safely into ``dest``; a corrupt or truncated archive is a SourceError."""
  try:
    with tarfile.open(archive, "r:*") as tar:
      tar.extractall(dest, filter="data")
  except (tarfile.TarError, EOFError, OSError, ValueError) as e:
    raise SourceError(f"{archive}: corrupt or truncated archive ({type(e).__name__}: {e})") from e
  return dest


def verify_local_archive(archive: pathlib.Path) -> None:
  """Checks a manual archive against ``md5sums.txt`` beside it, when there is one."""
  sums = archive.parent / "md5sums.txt"
  if sums.exists():
    expected = parse_md5sums(sums.read_text(), archive.name)
    actual = md5_of(archive)
    if expected and expected != actual:
      raise SourceError(f"{archive}: checksum mismatch: md5 {actual}, {sums} says {expected}")


def read_filename_list(root: pathlib.Path, name: str) -> list[str]:
  path = root / name
  if not path.exists():
    raise SourceError(f"{path}: missing filename list (expected the official layout: audio/, "
                      "train_filenames.txt, test_filenames.txt)")
  names = [line.strip().removeprefix("audio/") for line in path.read_text().splitlines() if line.strip()]
  for n in names:
    if not FILENAME.match(n):
      raise SourceError(f"{path}: unexpected entry {n!r} (want lang-*_speaker-NN_trial-T_digit-D.flac)")
  return names


def parse_name(name: str) -> dict:
  language, speaker, trial, digit = FILENAME.match(name).groups()
  lang_id = LANGUAGES.index(language)
  return {"language": language, "speaker": int(speaker), "trial": int(trial), "digit": int(digit),
          "label": int(digit) + 10 * lang_id}


def read_audio(path: pathlib.Path, cfg: HDConfig) -> tuple[np.ndarray, int]:
  """Mono float32 samples and the sample rate of one file; any defect is a SourceError naming it."""
  import soundfile as sf
  try:
    info = sf.info(str(path))
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
  except Exception as e:  # soundfile raises LibsndfileError / RuntimeError on unreadable input
    raise SourceError(f"{path}: unreadable audio ({type(e).__name__}: {e})") from e
  # A file cut short can decode without an error; its header still holds the full length.
  if info.frames > 0 and len(audio) < info.frames:
    raise SourceError(f"{path}: truncated audio ({len(audio)} of the {info.frames} samples its header declares)")
  if cfg.expected_sample_rate and rate != cfg.expected_sample_rate:
    raise SourceError(f"{path}: sample rate {rate} Hz, expected {cfg.expected_sample_rate} Hz")
  if rate < 8000:
    raise SourceError(f"{path}: sample rate {rate} Hz is too low for speech features (< 8000 Hz)")
  audio = audio.mean(axis=1)
  if audio.size == 0:
    raise SourceError(f"{path}: empty audio")
  if not np.all(np.isfinite(audio)):
    raise SourceError(f"{path}: non-finite samples")
  return audio, rate


def cmvn(features: np.ndarray, mode: str, eps: float = 1e-5) -> np.ndarray:
  """Per-utterance normalisation of ``features`` (frames, bands) over time, per band.

  ``mode``: "none" (unchanged), "mean" (subtract each band's mean) or "meanvar" (also divide by its
  std, floored at ``eps``). Every frame is valid here: the builder sees unpadded utterances.
  """
  if mode == "none":
    return features
  out = features - features.mean(0, keepdims=True)
  if mode == "meanvar":
    out = out / np.maximum(features.std(0, keepdims=True), eps)
  return out.astype(np.float32)


def log_mel(path: pathlib.Path, cfg: HDConfig) -> np.ndarray:
  """(frames, cfg.num_features) float32 features of one audio file (log-mels, optionally with CMVN
  and deltas; see ``HDConfig``)."""
  import librosa
  import soxr
  audio, rate = read_audio(path, cfg)
  if rate != cfg.sample_rate:
    audio = soxr.resample(audio, rate, cfg.sample_rate).astype(np.float32)
  win = int(round(cfg.win_ms * cfg.sample_rate / 1000))
  hop = int(round(cfg.hop_ms * cfg.sample_rate / 1000))
  if cfg.trim_db:
    trimmed, _ = librosa.effects.trim(audio, top_db=cfg.trim_db, frame_length=win, hop_length=hop)
    audio = trimmed if trimmed.size >= win else audio  # keep an all-quiet file whole
  mel = librosa.feature.melspectrogram(y=audio, sr=cfg.sample_rate, n_fft=win, win_length=win, hop_length=hop,
                                       n_mels=cfg.n_mels, power=2.0, fmin=cfg.f_min, fmax=cfg.f_max or None)
  if cfg.top_db:
    mel = np.maximum(mel, mel.max() * 10.0 ** (-cfg.top_db / 10))
  features = cmvn(np.log(mel + 1e-6).T.astype(np.float32), cfg.cmvn)
  if cfg.deltas:
    # 'nearest' edges accept utterances shorter than the filter ('interp' would refuse them).
    orders = [librosa.feature.delta(features, width=cfg.delta_width, order=k, axis=0, mode="nearest")
              for k in range(1, cfg.deltas + 1)]
    features = np.concatenate([features, *orders], axis=1).astype(np.float32)
  if cfg.time_downsample > 1:
    frames = -(-features.shape[0] // cfg.time_downsample) * cfg.time_downsample
    padded = np.pad(features, ((0, frames - features.shape[0]), (0, 0)), mode="edge")
    features = padded.reshape(-1, cfg.time_downsample, features.shape[1]).mean(1)
  return features


class HeidelbergDigits(tfds.core.GeneratorBasedBuilder):
  """Heidelberg Digits audio as log-mel sequences; 20 classes (digit + 10 for German)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [HDConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Optional: put {ARCHIVE_NAME} (with the md5sums.txt published beside it, to verify it) or its
  extracted layout (audio/, train_filenames.txt, test_filenames.txt) in manual_dir. Without it the
  archive is downloaded from {OFFICIAL_URLS[0]}.
  """

  def __init__(self, *, source_dir: Optional[str] = None, download_urls: Sequence[str] = OFFICIAL_URLS,
               **kwargs):
    self._source_dir = pathlib.Path(source_dir).expanduser() if source_dir else None
    self._download_urls = tuple(download_urls)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Heidelberg Digits (Cramer et al. 2022) audio as log-mel features.",
        features=tfds.features.FeaturesDict({
            "mel": tfds.features.Tensor(shape=(None, self.builder_config.num_features), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=20),
            "digit": tfds.features.Scalar(dtype=np.int32),
            "language": tfds.features.Text(),
            "speaker": tfds.features.Scalar(dtype=np.int32),
            "filename": tfds.features.Text(),
        }),
        homepage="https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/",
        citation="Cramer, Stradmann, Schemmel, Zenke (2022), IEEE TNNLS 33:2744-2757.",
    )

  def _locate_source(self, dl_manager) -> pathlib.Path:
    """The root of the official layout: extracted from an archive if needed."""
    src = self._source_dir
    if src is None:  # TFDS's own manual_dir (DownloadConfig(manual_dir=...), or <download_dir>/manual)
      try:
        src = pathlib.Path(dl_manager.manual_dir)
      except AssertionError:  # none given, or an empty one: download
        src = None
    if src is not None:
      if not src.exists():
        raise SourceError(f"{src}: source directory does not exist")
      if (src / "train_filenames.txt").exists() or (src / "audio").is_dir():
        return src
      archive = src / ARCHIVE_NAME if src.is_dir() else src
      if not archive.exists():
        raise SourceError(f"{src}: holds neither {ARCHIVE_NAME} nor the extracted layout "
                          "(audio/, train_filenames.txt, test_filenames.txt)")
      verify_local_archive(archive)
    else:
      archive = fetch_official(pathlib.Path(dl_manager.download_dir), self._download_urls)
    # Extraction is cached by content hash, and made atomic by extracting beside it and renaming.
    dest = pathlib.Path(dl_manager.download_dir) / "extracted" / f"hd_audio_{md5_of(archive)[:12]}"
    if not dest.exists():
      dest.parent.mkdir(parents=True, exist_ok=True)
      staging = pathlib.Path(tempfile.mkdtemp(prefix=".hd_audio_", dir=dest.parent))
      try:
        extract(archive, staging)
        staging.replace(dest)
      finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest

  def _split_generators(self, dl_manager):
    root = self._locate_source(dl_manager)
    train = read_filename_list(root, "train_filenames.txt")
    test = read_filename_list(root, "test_filenames.txt")
    test_only = {parse_name(n)["speaker"] for n in test} - {parse_name(n)["speaker"] for n in train}
    train_speakers = sorted({parse_name(n)["speaker"] for n in train} - test_only)
    k = self.builder_config.num_validation_speakers
    if k >= len(train_speakers):
      raise SourceError(f"{root / 'train_filenames.txt'}: {len(train_speakers)} training speaker(s), "
                        f"cannot hold out {k} for validation")
    val_speakers = set(train_speakers[len(train_speakers) - k:]) if k else set()
    splits = {"train": self._generate_examples(root, [n for n in train if parse_name(n)["speaker"] not in val_speakers])}
    if val_speakers:  # TFDS refuses an empty split: with k = 0 there is no validation split
      splits["validation"] = self._generate_examples(
          root, [n for n in train if parse_name(n)["speaker"] in val_speakers])
    splits["test"] = self._generate_examples(root, test)
    return splits

  def _generate_examples(self, root: pathlib.Path, names: list[str]):
    for name in names:
      path = root / "audio" / name
      if not path.exists():
        raise SourceError(f"{path}: listed in the filename lists but missing")
      meta = parse_name(name)
      yield name, {"mel": log_mel(path, self.builder_config), "label": meta["label"], "digit": meta["digit"],
                   "language": meta["language"], "speaker": meta["speaker"], "filename": name}


def build(data_dir: str, source_dir: Optional[str] = None, *, download_urls: Sequence[str] = OFFICIAL_URLS,
          **config) -> HeidelbergDigits:
  """Builds (or reuses) the dataset and returns the prepared builder.

  ``source_dir``: the official layout or a directory holding its archive; None downloads the archive
  from ``download_urls`` (:func:`fetch_official`) into ``<data_dir>/downloads``.
  """
  cfg = HDConfig(**config)
  # TFDS refuses a new object named like a predefined config; the name encodes every field.
  known = {c.name for c in HeidelbergDigits.BUILDER_CONFIGS}
  builder = HeidelbergDigits(data_dir=str(pathlib.Path(data_dir).expanduser()), source_dir=source_dir,
                             download_urls=download_urls, config=cfg.name if cfg.name in known else cfg,
                             file_format="array_record")
  tfds.disable_progress_bar()  # per-example progress bars swamp the training log
  builder.download_and_prepare()
  return builder

"""The ``data`` sub-config of the HD experiment: its fields (``FIELDS``: default, check, legacy value)
and the way from it to padded, normalised arrays.

Source resolution: ``manual_dir`` (the official layout, extracted or as ``hd_audio.tar.gz``) if
set; else, with ``use_standin``, the eSpeak NG stand-in corpus (synthesised on first use under
``data_dir``, in a directory named by its arguments and the eSpeak NG version); else the official download (refused when ``require_manual_dir`` is set, as in the
dev-corpus config).

``validate(data)`` checks every data field (features, stand-in style, augmentation, classes) and
their relations before any compute; its errors name the field as ``config.data.<field>``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil
from typing import TYPE_CHECKING

from absl import logging

from data import augment, espeak, hd_loader, synth_corpus
from experiments.schema import (BOOL, FINITE, FRACTION, NONNEGATIVE, POSITIVE, SINCE_START, STRING, Check, Field,
                                Int, Maybe, OneOf, Range, Section, check, is_int, legacy_value)
from experiments.sharding import is_primary, sync_processes

if TYPE_CHECKING:  # the TFDS builder is imported where it runs, so the config side stays light
  from data.heidelberg_digits import HDConfig

# config.data: the corpus, its features and their augmentation. A field named like an HDConfig field
# is a feature option (data/heidelberg_digits.py), ``standin_<x>`` is synth_corpus.Style's ``x``, and
# ``augment.<x>`` is data.augment.AugmentConfig's ``x``.
FIELDS = (
    Section("data", "the Heidelberg Digits corpus (official, the dev corpus or the eSpeak NG stand-in), its "
            "features and their augmentation"),
    Field("data.manual_dir", None, Maybe(STRING), "official layout (extracted, or a directory holding "
          "hd_audio.tar.gz); None = download it", type=str),
    Field("data.use_standin", False, BOOL, "with no manual_dir: synthesise and use the eSpeak NG stand-in "
          "instead of downloading"),
    Field("data.standin_speakers", 12, Int(1)),
    Field("data.standin_trials", 6, Int(1)),
    Field("data.standin_seed", 0, Int(0)),
    # The harder stand-in (synth_corpus.Style); these defaults give the basic stand-in, bit for bit.
    Field("data.standin_voices", "basic", OneOf(*synth_corpus.VOICE_SETS),
          "or 'many': accents x 76 eSpeak NG variants, speaker speed/pitch offsets", legacy="basic"),
    Field("data.standin_noise_snr_db", None, Maybe(FINITE), "None = clean; else min SNR (dB) of white noise",
          legacy=None, type=float),
    Field("data.standin_reverb_rt60", 0.0, Range(0, 5), "0 = dry; else max RT60 (s) of each speaker's "
          "synthetic room", legacy=0.0),
    Field("data.standin_pad_ms", 0.0, Range(0, 5000), "max silence (ms) added before and after each word",
          legacy=0.0),
    Field("data.standin_gain_db", 0.0, Range(0, 40), "max per-utterance gain (dB), either way", legacy=0.0),
    Field("data.require_manual_dir", False, BOOL, "never download: fail with a clear message when manual_dir "
          "is not set (the dev variant)", legacy=False),
    Field("data.num_classes", 20, Int(2), "size of the label space (the readout's outputs): HD has 20 "
          "(digit + 10 for German)", legacy=20),
    Field("data.data_dir", "~/tensorflow_datasets/rhel_jax", STRING, "TFDS cache root (one sub-directory per "
          "source)"),
    # Features: 16 kHz, 25 ms windows, 10 ms hop, 40 log-mel bands, 2 frames averaged per step.
    Field("data.sample_rate", 16000, Int(1)),
    Field("data.n_mels", 40, Int(1)),
    Field("data.win_ms", 25.0, POSITIVE),
    Field("data.hop_ms", 10.0, POSITIVE),
    Field("data.time_downsample", 2, Int(1)),
    Field("data.max_frames", 0, Int(0), "pad/crop every sequence to this many steps (0 = the longest sequence)"),
    Field("data.num_validation_speakers", 1, Int(0)),
    Field("data.validation_speaker", -1, Check(lambda v: is_int(v) and v >= -1, "a speaker number or -1"),
          ">= 0: hold out this training speaker for validation instead (with num_validation_speakers=0), e.g. "
          "each in turn for a leave-one-speaker-out search; -1: off", legacy=-1),
    Field("data.eval_split", "test", Check(lambda v: v in ("test", "validation"), "'test' or 'validation'"),
          "the split evaluated during and after training: 'validation' for probes (feature and training "
          "choices are made on the validation speaker; the reported metrics then refer to it)", legacy="test"),
    # Speaker-robust feature options, all off by default (data/heidelberg_digits.py:HDConfig).
    Field("data.cmvn", "none", OneOf("none", "mean", "meanvar"), "per-utterance normalisation over time per "
          "band: 'mean' or 'meanvar'", legacy="none"),
    Field("data.deltas", 0, Check(lambda v: is_int(v) and v in (0, 1, 2), "0, 1 or 2"),
          "1: + deltas, 2: + deltas and delta-deltas (n_in = n_mels * (1 + deltas))", legacy=0),
    Field("data.delta_width", 9, Check(lambda v: is_int(v) and v >= 3 and v % 2 == 1, "an odd int >= 3"),
          "odd frame count of the delta filter", legacy=9),
    Field("data.trim_db", 0.0, NONNEGATIVE, "> 0: trim leading/trailing audio quieter than peak - trim_db",
          legacy=0.0),
    Field("data.f_min", 0.0, NONNEGATIVE, "mel band range (Hz)", legacy=0.0),
    Field("data.f_max", 0.0, NONNEGATIVE, "0 = sample_rate / 2", legacy=0.0),
    Field("data.top_db", 0.0, NONNEGATIVE, "> 0: floor each utterance's mel power at its peak - top_db (dB)",
          legacy=0.0),
    Section("data.augment", "on-the-fly augmentation of each training batch from the step's key "
            "(data/augment.py); 0 = off"),
    Field("data.augment.time_stretch", 0.0, FRACTION, "max relative speed change, e.g. 0.1", legacy=0.0),
    Field("data.augment.band_shift", 0.0, NONNEGATIVE, "max shift in mel bands, e.g. 2.0", legacy=0.0),
    Field("data.augment.band_warp", 0.0, FRACTION, "max VTLP warp factor change, e.g. 0.1", legacy=0.0),
    Field("data.augment.time_masks", 0, Int(0), "SpecAugment time masks: count", legacy=0),
    Field("data.augment.time_mask_width", 0, Int(0), "and max frames", legacy=0),
    Field("data.augment.freq_masks", 0, Int(0), "SpecAugment band masks: count", legacy=0),
    Field("data.augment.freq_mask_width", 0, Int(0), "and max bands", legacy=0),
    Field("data.augment.noise_std", 0.0, NONNEGATIVE, "additive Gaussian noise on the standardised features",
          legacy=0.0),
)
# config.data.standin_<field> -> synth_corpus.Style.<field>; absent = the basic stand-in.
STYLE_FIELDS = tuple(f.name for f in dataclasses.fields(synth_corpus.Style))


def _field(data, name):
  """``config.data.<name>``; for a config saved before the field existed, its legacy value (so that
  such a config names the same feature set and TFDS cache as it always did)."""
  if name in data:
    return data[name]
  value = legacy_value(FIELDS, f"data.{name}")
  if value is SINCE_START:
    raise ValueError(f"config.data.{name} is missing")
  return value


def feature_fields() -> tuple[str, ...]:
  """The config.data fields that are HDConfig fields of the same name (the feature set)."""
  from data.heidelberg_digits import HDConfig  # noqa: PLC0415  (TFDS)
  names = {f.name for f in dataclasses.fields(HDConfig)}
  return tuple(f.path.split(".")[1] for f in FIELDS if isinstance(f, Field) and f.path.count(".") == 1
               and f.path.split(".")[1] in names)


def hd_config(data) -> HDConfig:
  """The ``HDConfig`` (feature set) of ``config.data``; errors name ``config.data.<field>``."""
  from data.heidelberg_digits import HDConfig  # noqa: PLC0415  (TFDS)
  try:
    return HDConfig(**{name: _field(data, name) for name in feature_fields()})
  except ValueError as e:
    raise ValueError(str(e).replace("HDConfig.", "config.data.")) from None


def standin_style(data) -> synth_corpus.Style:
  """The stand-in's ``synth_corpus.Style`` from ``config.data.standin_*``."""
  kwargs = {name: data["standin_" + name] for name in STYLE_FIELDS if "standin_" + name in data}
  try:
    return synth_corpus.Style(**kwargs)
  except ValueError as e:
    raise ValueError(str(e).replace("Style.", "config.data.standin_")) from None


def validate(data) -> None:
  """Raises ValueError naming the first invalid ``config.data`` field: each field's check
  (``FIELDS``), then :func:`check_relations`."""
  check(data, FIELDS, prefix="data")
  check_relations(data)


def check_relations(data) -> None:
  """Checks that span ``config.data`` fields (each field alone: ``FIELDS``); errors name the fields.

  The data layer's own objects must accept the section too: the feature set (``HDConfig``: f_min <
  f_max <= the Nyquist frequency), the stand-in's style and the augmentation.
  """
  hd_config(data)
  standin_style(data)
  augment.from_config(data)
  speaker = validation_speaker(data)
  if speaker is not None and data.num_validation_speakers:
    raise ValueError(f"config.data.validation_speaker={speaker} chooses the validation speaker itself: "
                     f"set config.data.num_validation_speakers=0 (got {data.num_validation_speakers})")
  if eval_split(data) == "validation" and data.num_validation_speakers < 1 and speaker is None:
    raise ValueError("config.data.eval_split='validation' needs config.data.num_validation_speakers >= 1 "
                     "or config.data.validation_speaker")


def validation_speaker(data):
  """``config.data.validation_speaker``: a training speaker held out for validation (one fold of a
  leave-one-speaker-out search), or None (-1 in the config; the builder's carving applies)."""
  speaker = _field(data, "validation_speaker")
  return None if speaker == -1 else speaker


def eval_split(data) -> str:
  """The split the task evaluates: ``config.data.eval_split`` ("test", the default, or "validation":
  the held-out training speaker(s), for probes that must not look at the test speakers)."""
  return _field(data, "eval_split")


def standin_dir(data) -> pathlib.Path:
  """Where the stand-in of ``config.data`` is cached. The name carries the synthesiser's version, so
  a corpus that another eSpeak NG spoke (e.g. the Debian 1.51 program's ``hd_standin_s12_t6_seed0``)
  is never reused, nor its TFDS build (keyed by this path)."""
  tag = standin_style(data).tag()
  return pathlib.Path(data.data_dir).expanduser() / (
      f"hd_standin_s{data.standin_speakers}_t{data.standin_trials}_seed{data.standin_seed}"
      + (f"_{tag}" if tag else "") + f"_{synth_corpus.engine_tag()}")


def ensure_standin(data) -> pathlib.Path:
  """Synthesises the stand-in corpus once (atomically: written beside, then renamed)."""
  out = standin_dir(data)
  if not (out / "train_filenames.txt").exists():
    logging.info("synthesising the stand-in corpus into %s (eSpeak NG %s)", out, espeak.version())
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    sizes = synth_corpus.write_corpus(staging, speakers=data.standin_speakers, trials=data.standin_trials,
                                      seed=data.standin_seed, style=standin_style(data))
    staging.replace(out)
    logging.info("stand-in corpus: %s", sizes)
  return out


def source_label(data) -> str | None:
  """What the stand-in of ``config.data`` was synthesised with (from its ``synth_corpus.json``), for
  ``results.md``; None when the data is not the stand-in."""
  if data.manual_dir or data.get("require_manual_dir", False) or not data.use_standin:
    return None
  out = standin_dir(data)
  meta = synth_corpus.read_metadata(out)
  return (f"stand-in corpus `{out.name}`, synthesised by eSpeak NG {meta['espeak_ng_version']} "
          f"(espeakng-loader {meta['espeakng_loader_version']})")


def num_classes(data, arrays: dict[str, hd_loader.HDArrays]) -> int:
  """``config.data.num_classes`` (default 20, HD's label space), checked against every split's labels."""
  n = _field(data, "num_classes")
  for split, a in arrays.items():
    if len(a) and int(a.labels.max()) >= n:
      raise ValueError(f"config.data.num_classes={n}, but the {split} split has label {int(a.labels.max())} "
                       "(labels are digit + 10 for German: HD needs 20)")
  return n


def load(data) -> dict[str, hd_loader.HDArrays]:
  """The splits of ``config.data``, building what is not cached yet (stand-in corpus, TFDS dataset).

  In a multi-process run process 0 builds the shared caches first and the others then read them.
  """
  validate(data)
  if is_primary():
    arrays = _load(data)
    sync_processes("heidelberg digits ready")
    return arrays
  sync_processes("heidelberg digits ready")
  return _load(data)


def _load(data) -> dict[str, hd_loader.HDArrays]:
  if data.manual_dir:
    source = pathlib.Path(data.manual_dir).expanduser().resolve()
    if not source.exists():
      raise ValueError(f"config.data.manual_dir: {source} does not exist")
  elif _field(data, "require_manual_dir"):
    raise ValueError("config.data.manual_dir is not set, and this config needs a local corpus (it never "
                     "downloads): set RHEL_JAX_SHARED to the shared folder (the dev corpus is "
                     "$RHEL_JAX_SHARED/data/fsdd_dev) or pass --config.data.manual_dir=/path/to/corpus")
  elif data.use_standin:
    source = ensure_standin(data)
  else:
    source = None  # official download
  # The TFDS cache is keyed by the source too, so another corpus never reuses a stale build.
  tag = hashlib.md5(str(source).encode()).hexdigest()[:8] if source else "official"
  data_dir = pathlib.Path(data.data_dir).expanduser() / f"hd_source_{tag}"
  from data.heidelberg_digits import build  # noqa: PLC0415  (TFDS)
  cfg = hd_config(data)
  builder = build(str(data_dir), str(source) if source else None,
                  **{name: getattr(cfg, name) for name in feature_fields()})
  speaker = validation_speaker(data)
  arrays = hd_loader.load_splits(builder, max_frames=data.max_frames or None,
                                 validation_speakers=() if speaker is None else (speaker,))
  num_classes(data, arrays)
  return arrays


"""From the ``data`` sub-config of the HD experiment to padded, normalised arrays.

Source resolution: ``manual_dir`` (the official layout, extracted or as ``hd_audio.tar.gz``) if
set; else, with ``use_standin``, the eSpeak NG stand-in corpus (synthesised on first use under
``data_dir``, in a directory named by its arguments and the eSpeak NG version); else the official
download (refused when ``require_manual_dir`` is set, as in the dev-corpus config).

``validate(data)`` checks every data field (features, stand-in style, augmentation, classes)
before any compute; its errors name the field as ``config.data.<field>``.
"""
from __future__ import annotations

import hashlib
import pathlib
import shutil

from absl import logging

from data import augment, espeak, hd_loader, synth_corpus
from data.heidelberg_digits import HDConfig, build
from experiments.sharding import is_primary, sync_processes

# config.data fields that are HDConfig fields of the same name (the feature set).
FEATURE_FIELDS = ("sample_rate", "n_mels", "win_ms", "hop_ms", "time_downsample", "num_validation_speakers",
                  "cmvn", "deltas", "delta_width", "trim_db", "f_min", "f_max", "top_db")
# Fields added after the first runs, with the value that gives the features as they were before.
FEATURE_DEFAULTS = {"cmvn": "none", "deltas": 0, "delta_width": 9, "trim_db": 0.0, "f_min": 0.0, "f_max": 0.0,
                    "top_db": 0.0}
# config.data.standin_<field> -> synth_corpus.Style.<field>; absent = the basic stand-in.
STYLE_FIELDS = ("voices", "noise_snr_db", "reverb_rt60", "pad_ms", "gain_db")


def _field(data, name):
  return data[name] if name in data else FEATURE_DEFAULTS[name]


def hd_config(data) -> HDConfig:
  """The ``HDConfig`` (feature set) of ``config.data``; errors name ``config.data.<field>``."""
  try:
    return HDConfig(**{name: _field(data, name) for name in FEATURE_FIELDS})
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
  """Raises ValueError naming the first invalid ``config.data`` field."""
  hd_config(data)
  standin_style(data)
  augment.from_config(data)
  n = data.get("num_classes", 20)
  if isinstance(n, bool) or not isinstance(n, int) or n < 2:
    raise ValueError(f"config.data.num_classes must be an int >= 2, got {n!r}")
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
  speaker = data.get("validation_speaker", -1)
  if isinstance(speaker, bool) or not isinstance(speaker, int) or speaker < -1:
    raise ValueError(f"config.data.validation_speaker must be a speaker number or -1, got {speaker!r}")
  return None if speaker == -1 else speaker


def eval_split(data) -> str:
  """The split the task evaluates: ``config.data.eval_split`` ("test", the default, or "validation":
  the held-out training speaker(s), for probes that must not look at the test speakers)."""
  split = data.get("eval_split", "test")
  if split not in ("test", "validation"):
    raise ValueError(f"config.data.eval_split must be 'test' or 'validation', got {split!r}")
  return split


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
  n = data.get("num_classes", 20)
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
  elif data.get("require_manual_dir", False):
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
  cfg = hd_config(data)
  builder = build(str(data_dir), str(source) if source else None,
                  **{name: getattr(cfg, name) for name in FEATURE_FIELDS})
  speaker = validation_speaker(data)
  arrays = hd_loader.load_splits(builder, max_frames=data.max_frames or None,
                                 validation_speakers=() if speaker is None else (speaker,))
  num_classes(data, arrays)
  return arrays


"""From the ``data`` sub-config of the HD experiment to padded, normalised arrays.

Source resolution: ``manual_dir`` (the official layout, extracted or as ``hd_audio.tar.gz``) if
set; else, with ``use_standin``, the espeak-ng stand-in corpus (synthesised on first use under
``data_dir``); else the official download.
"""
from __future__ import annotations

import hashlib
import pathlib
import shutil

from absl import logging

from data import hd_loader, synth_corpus
from data.heidelberg_digits import build


def standin_dir(data) -> pathlib.Path:
  return pathlib.Path(data.data_dir).expanduser() / (
      f"hd_standin_s{data.standin_speakers}_t{data.standin_trials}_seed{data.standin_seed}")


def ensure_standin(data) -> pathlib.Path:
  """Synthesises the stand-in corpus once (atomically: written beside, then renamed)."""
  out = standin_dir(data)
  if not (out / "train_filenames.txt").exists():
    logging.info("synthesising the espeak-ng stand-in corpus into %s", out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    sizes = synth_corpus.write_corpus(staging, speakers=data.standin_speakers, trials=data.standin_trials,
                                      seed=data.standin_seed)
    staging.replace(out)
    logging.info("stand-in corpus: %s", sizes)
  return out


def load(data) -> dict[str, hd_loader.HDArrays]:
  if data.manual_dir:
    source = pathlib.Path(data.manual_dir).expanduser().resolve()
    if not source.exists():
      raise ValueError(f"config.data.manual_dir: {source} does not exist")
  elif data.use_standin:
    source = ensure_standin(data)
  else:
    source = None  # official download
  # The TFDS cache is keyed by the source too, so another corpus never reuses a stale build.
  tag = hashlib.md5(str(source).encode()).hexdigest()[:8] if source else "official"
  data_dir = pathlib.Path(data.data_dir).expanduser() / f"hd_source_{tag}"
  builder = build(str(data_dir), str(source) if source else None, sample_rate=data.sample_rate,
                  n_mels=data.n_mels, win_ms=data.win_ms, hop_ms=data.hop_ms,
                  time_downsample=data.time_downsample, num_validation_speakers=data.num_validation_speakers)
  return hd_loader.load_splits(builder, max_frames=data.max_frames or None)

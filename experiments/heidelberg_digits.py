"""Heidelberg Digits (Table 1, left column): 20-way spoken-digit classification from log-mels.

    python -m experiments.main --config=experiments/heidelberg_digits.py \\
        --config.data.manual_dir=/path/to/hd            # official layout, extracted or hd_audio.tar.gz
    python -m experiments.main --config=experiments/heidelberg_digits.py:quick   # synthetic stand-in, CPU
    RHEL_JAX_SHARED=/path/to/shared \
    python -m experiments.main --config=experiments/heidelberg_digits.py:dev     # real-speech dev corpus
    python -m experiments.main --config=experiments/heidelberg_digits.py:hard    # harder synthetic stand-in

Variants: ``full`` (the official corpus), ``quick`` (a small run on the basic stand-in), ``dev`` (the
full protocol on the FSDD dev corpus at ``$RHEL_JAX_SHARED/data/fsdd_dev``, 10 classes, or on
``--config.data.manual_dir``), ``hard`` (the full protocol on the harder, synthetic stand-in).
The stand-ins are synthesised on first use by eSpeak NG from the ``espeakng-loader`` package
(``data/synth_corpus.py``), which ``pip install`` brings: nothing else to install.
Feature options (``cmvn``, ``deltas``, ...) and augmentation (``data.augment.*``) are off by default;
see docs/hd_features.md.

Classification reads the readout's logits pooled over the valid (unpadded) steps of each sequence
(``task.pooling``: their mean by default) and trains with their cross-entropy (loss 'ce_<pooling>').
"""
import os
import pathlib

import ml_collections
from ml_collections import config_dict

from experiments import base_config


VARIANTS = ("full", "quick", "dev", "hard")
SHARED_ENV = "RHEL_JAX_SHARED"  # path to the shared folder; the dev corpus is at $RHEL_JAX_SHARED/data/fsdd_dev


def dev_corpus_dir():
  """``$RHEL_JAX_SHARED/data/fsdd_dev`` when the variable is set (an error if that is missing), else None."""
  shared = os.environ.get(SHARED_ENV)
  if not shared:
    return None
  path = pathlib.Path(shared).expanduser() / "data" / "fsdd_dev"
  if not (path / "train_filenames.txt").exists():
    raise ValueError(f"{SHARED_ENV}={shared}: {path} does not hold the dev corpus (no train_filenames.txt)")
  return str(path)


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"experiments/heidelberg_digits.py: unknown variant {variant!r}; use one of {list(VARIANTS)}")
  c = base_config.get_config()
  c.name = f"heidelberg_digits_{variant}"
  c.methods = ("bptt", "rhel", "rhel_centered", "eprop", "tbptt")
  c.num_epochs = 200
  # 0 = one pass over the training split per epoch.
  c.steps_per_epoch = 0
  c.batch_size = 64
  c.eval_size = 0  # unused: the whole official test split is evaluated
  c.alignment_epochs = (0, 100, 199)
  c.model.num_hidden = 128
  c.model.dt = 0.5
  c.model.w_scale = 0.5
  c.model.in_scale = 0.5
  c.train.lr = 1e-3
  c.train.schedule = "cosine"
  c.method.eps = 1e-3

  c.task = ml_collections.ConfigDict({"name": "heidelberg_digits"})
  # One prediction per utterance from the per-step logits: "mean", "max", "last" or "lse" (valid steps only).
  c.task.pooling = "mean"
  # Training targets put 1 - label_smoothing on the class, the rest spread evenly (0 = one-hot).
  c.task.label_smoothing = 0.0
  c.data = ml_collections.ConfigDict()
  # Official layout (extracted, or a directory holding hd_audio.tar.gz); None = download it.
  c.data.manual_dir = config_dict.placeholder(str)
  # With no manual_dir: synthesise and use the eSpeak NG stand-in instead of downloading.
  c.data.use_standin = False
  c.data.standin_speakers = 12
  c.data.standin_trials = 6
  c.data.standin_seed = 0
  # Harder stand-in (synth_corpus.Style); these defaults give the basic stand-in, bit for bit.
  c.data.standin_voices = "basic"      # or "many": accents x 76 eSpeak NG variants, speaker speed/pitch offsets
  c.data.standin_noise_snr_db = config_dict.placeholder(float)  # None = clean; else min SNR (dB) of white noise
  c.data.standin_reverb_rt60 = 0.0     # 0 = dry; else max RT60 (s) of each speaker's synthetic room
  c.data.standin_pad_ms = 0.0          # max silence (ms) added before and after each word
  c.data.standin_gain_db = 0.0         # max per-utterance gain (dB), either way
  # Never download: fail with a clear message when manual_dir is not set (the dev variant).
  c.data.require_manual_dir = False
  # Size of the label space (the readout's outputs): HD has 20 (digit + 10 for German).
  c.data.num_classes = 20
  # TFDS cache root (one sub-directory per source).
  c.data.data_dir = "~/tensorflow_datasets/rhel_jax"
  # Features: 16 kHz, 25 ms windows, 10 ms hop, 40 log-mel bands, 2 frames averaged per step.
  c.data.sample_rate = 16000
  c.data.n_mels = 40
  c.data.win_ms = 25.0
  c.data.hop_ms = 10.0
  c.data.time_downsample = 2
  # Pad/crop every sequence to this many steps (0 = the longest sequence).
  c.data.max_frames = 0
  c.data.num_validation_speakers = 1
  # >= 0: hold out this training speaker for validation instead (with num_validation_speakers=0),
  # e.g. each in turn for a leave-one-speaker-out search; -1: off.
  c.data.validation_speaker = -1
  # The split evaluated during and after training: "test", or "validation" for probes (feature and
  # training choices are made on the validation speaker; the reported metrics then refer to it).
  c.data.eval_split = "test"
  # Speaker-robust feature options, all off by default (data/heidelberg_digits.py:HDConfig).
  c.data.cmvn = "none"        # per-utterance normalisation over time per band: "mean" or "meanvar"
  c.data.deltas = 0           # 1: + deltas, 2: + deltas and delta-deltas (n_in = n_mels * (1 + deltas))
  c.data.delta_width = 9      # odd frame count of the delta filter
  c.data.trim_db = 0.0        # > 0: trim leading/trailing audio quieter than peak - trim_db
  c.data.f_min = 0.0          # mel band range (Hz); f_max 0 = sample_rate / 2
  c.data.f_max = 0.0
  c.data.top_db = 0.0         # > 0: floor each utterance's mel power at its peak - top_db (dB)
  # On-the-fly augmentation of each training batch from the step's key (data/augment.py); 0 = off.
  c.data.augment = ml_collections.ConfigDict({
      "time_stretch": 0.0,     # max relative speed change, e.g. 0.1
      "band_shift": 0.0,       # max shift in mel bands, e.g. 2.0
      "band_warp": 0.0,        # max VTLP warp factor change, e.g. 0.1
      "time_masks": 0, "time_mask_width": 0,   # SpecAugment time masks: count, max frames
      "freq_masks": 0, "freq_mask_width": 0,   # SpecAugment band masks: count, max bands
      "noise_std": 0.0,        # additive Gaussian noise on the standardised features
  })

  if variant == "quick":
    c.data.use_standin = True
    c.num_epochs = 12
    c.batch_size = 32
    c.alignment_epochs = (0, 6, 11)
    c.checkpoint_every = 4
    c.model.num_hidden = 64
    c.train.lr = 3e-3
  if variant == "dev":
    # The FSDD dev corpus: 4 speakers, English only; speaker 03 is test-only. With only three
    # training speakers, carving one out for validation would cost a third of the speaker variety
    # the model learns from, so all three train, and choices are made by leave-one-speaker-out
    # folds over them (--config.data.validation_speaker=k with eval_split=validation; docs/hd_features.md).
    c.data.manual_dir = dev_corpus_dir()
    c.data.require_manual_dir = True
    c.data.num_classes = 10
    c.data.num_validation_speakers = 0
    # Chosen on the leave-one-speaker-out folds (docs/hd_features.md, studies/hd_speakers/results/fold_probes): the max
    # over time of the logits, deltas, VTLP + time-stretch augmentation and 50 epochs took the folds'
    # mean from 39.6 % (time-averaged logits of the plain log-mels) to 54.5 %.
    c.task.pooling = "max"
    c.data.deltas = 1
    c.data.augment.time_stretch = 0.15
    c.data.augment.band_warp = 0.1
    c.num_epochs = 50
    c.alignment_epochs = (0, 25, 49)
    # Fourth round (docs/hd_features.md): trimming leading and trailing audio more than 30 dB below
    # the peak took the folds' mean from 54.5 % to 61.8 % (20 dB: 56.5 %, 40 dB: 58.2 %).
    c.data.trim_db = 30.0
    # Seventh round: flooring each utterance's mel power at its peak - 40 dB beat the trimmed config
    # on all 3 folds with two seed roots (61.8 -> 64.1 % at root 1000, 57.2 -> 60.2 % at 2000;
    # 30, 35, 45, 50 dB: 56.9, 62.1, 62.5, 59.2 % at root 1000).
    c.data.top_db = 40.0
    # e-prop's reverse-mode form: the same gradient as the online traces (benchmarks/eprop_forms.py),
    # whose (seeds, B, 128, 128) state per step would make it the slowest method by far.
    c.method.eprop_online = False
  if variant == "hard":
    c.data.use_standin = True
    c.data.standin_voices = "many"
    c.data.standin_noise_snr_db = 5.0
    c.data.standin_reverb_rt60 = 0.5
    c.data.standin_pad_ms = 300.0
    c.data.standin_gain_db = 10.0
  return c

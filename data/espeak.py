"""eSpeak NG speech synthesis from PyPI: ``espeakng-loader``'s libespeak-ng and voice data, through ctypes.

No ``espeak-ng`` program is run, so ``pip install`` is the whole set-up.

Every utterance runs in a freshly loaded copy of the library (dlopen, synthesise, dlclose: a few
ms). eSpeak NG keeps synthesis state in function-level statics (the pitch-flutter phase, the gain
control, the Klatt filters) that neither ``espeak_Initialize`` nor ``espeak_Terminate`` resets:
with the library loaded once, saying the same word three times can give three different waveforms,
even of different lengths. A fresh copy starts from the state the ``espeak-ng`` program starts
from, one process per word, and both random generators that shape noise (eSpeak NG's own, and
libc's ``rand``, which the breath noise uses) are seeded before each utterance, so the samples are a
function of the arguments alone.
"""
from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import functools
import importlib.metadata
import itertools
import os
import threading

import numpy as np

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: audio to the callback; espeak_Synth returns when done
INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data is missing
POS_CHARACTER = 1
CHARS_UTF8, ENDPAUSE = 0x1, 0x1000  # espeak_Synth flags; the program adds the sentence-end pause too
PARAM_RATE, PARAM_PITCH = 1, 3  # espeak_PARAMETER
EE_OK = 0
RATE_RANGE, PITCH_RANGE = (80, 450), (0, 99)  # words per minute (espeakRATE_MINIMUM/MAXIMUM); pitch 0-99
RANDOM_SEED = 1  # libc's rand() starts from seed 1 in a fresh process

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); returns 0 to continue.
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):
  """speak_lib.h's espeak_VOICE."""
  _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
              ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
              ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_SIGNATURES = {  # name: (restype, argtypes)
    "espeak_Initialize": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]),
    "espeak_Info": (ctypes.c_char_p, [ctypes.POINTER(ctypes.c_char_p)]),
    "espeak_ListVoices": (ctypes.POINTER(ctypes.POINTER(_Voice)), [ctypes.POINTER(_Voice)]),
    "espeak_SetSynthCallback": (None, [SYNTH_CALLBACK]),
    "espeak_SetVoiceByName": (ctypes.c_int, [ctypes.c_char_p]),
    "espeak_SetParameter": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "espeak_ng_SetRandSeed": (ctypes.c_int, [ctypes.c_long]),
    "espeak_Synth": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                    ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]),
    "espeak_Synchronize": (ctypes.c_int, []),
    "espeak_Terminate": (ctypes.c_int, []),
}
_LOCK = threading.Lock()  # one copy of the library at a time: its state is global


@functools.lru_cache(maxsize=None)
def _libc():
  libc = ctypes.CDLL(None)  # the process's libc, whose rand() the library calls
  libc.srand.restype, libc.srand.argtypes = None, [ctypes.c_uint]
  return libc


def _paths() -> tuple[str, str]:
  try:
    import espeakng_loader
  except ImportError as e:
    raise RuntimeError("the HD stand-in needs the espeakng-loader package (setup.cfg lists it: "
                       "pip install -e .)") from e
  return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def _is_loaded(path: str) -> bool:
  try:
    handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)._handle
  except OSError:
    return False
  _ctypes.dlclose(handle)  # RTLD_NOLOAD took a reference too
  return True


@contextlib.contextmanager
def _fresh_library():
  """Yields (a freshly loaded and initialised libespeak-ng, its sample rate); unloads it after."""
  path, data_path = _paths()
  with _LOCK:
    if _is_loaded(path):
      raise RuntimeError(f"{path} is already loaded in this process (by another module?), so its synthesis "
                         "state would carry over between utterances; the stand-in needs it to itself")
    lib = ctypes.CDLL(path)
    try:
      for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
      rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), INITIALIZE_DONT_EXIT)
      if rate <= 0:
        raise RuntimeError(f"libespeak-ng ({path}) could not load its data from {data_path} "
                           f"(espeak_Initialize returned {rate})")
      try:
        yield lib, rate
      finally:
        lib.espeak_Terminate()
    finally:
      _ctypes.dlclose(lib._handle)
      del lib
    if _is_loaded(path):
      raise RuntimeError(f"{path} stayed loaded after dlclose, so the next utterance would not start fresh")


@functools.lru_cache(maxsize=None)
def version() -> str:
  """The eSpeak NG library's version string (``espeak_Info``), e.g. '1.52.0'."""
  with _fresh_library() as (lib, _):
    return lib.espeak_Info(None).decode()


def loader_version() -> str:
  """The installed ``espeakng-loader`` package's version."""
  return importlib.metadata.version("espeakng-loader")


@functools.lru_cache(maxsize=None)
def variants() -> frozenset[str]:
  """Names of the voice variants (``espeak-ng --voices=variant``): the files in voices/!v."""
  spec = _Voice(languages=b"variant")
  names = set()
  with _fresh_library() as (lib, _):
    found = lib.espeak_ListVoices(ctypes.byref(spec))
    for i in itertools.count():
      if not found[i]:
        break
      identifier = found[i].contents.identifier.decode()
      if identifier.startswith("!v/"):
        names.add(identifier[3:])
  return frozenset(names)


def _variant_file(variant: str) -> str:
  """The variant's file name, as eSpeak NG reads it (a number n is m<n> below 10, f<n-10> above)."""
  if variant.isdigit():
    n = int(variant)
    return f"m{n}" if n < 10 else f"f{n - 10}"
  return variant


def _check_variant(voice: str) -> None:
  # eSpeak NG ignores an unknown variant (the voice speaks without it), so look it up.
  _, plus, variant = voice.partition("+")
  if plus and _variant_file(variant) not in variants():
    raise ValueError(f"eSpeak NG voice {voice!r}: no variant {variant!r} in espeak-ng {version()} "
                     f"(espeakng-loader {loader_version()}); its variants: {sorted(variants())}")


def _no_voice(voice: str) -> ValueError:
  return ValueError(f"eSpeak NG voice {voice!r}: no voice {voice.partition('+')[0]!r} in espeak-ng {version()} "
                    f"(espeakng-loader {loader_version()})")


def check_voice(voice: str) -> None:
  """Raises ValueError naming ``voice`` ("language" or "language+variant") unless both parts exist:
  the variant in eSpeak NG's variant list, the language voice loaded by ``espeak_SetVoiceByName``."""
  _check_variant(voice)
  with _fresh_library() as (lib, _):
    found = lib.espeak_SetVoiceByName(voice.encode()) == EE_OK
  if not found:
    raise _no_voice(voice)


def _check_int(name: str, value, bounds: tuple[int, int]) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not bounds[0] <= value <= bounds[1]:
    raise ValueError(f"{name} must be an int in [{bounds[0]}, {bounds[1]}], got {value!r}")


def synthesize(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
  """Speaks ``text`` as the ``espeak-ng -v VOICE -s RATE -p PITCH TEXT`` program would.

  voice: "language" or "language+variant" (e.g. "en+m1", "de+f2", "en-us-nyc+Alex").
  rate: words per minute in [80, 450]; pitch: in [0, 99].
  Returns (audio, sample_rate): int16 samples, shape (n,), and the library's rate (22050 Hz).
  The same arguments give the same samples, in any order, process and thread.
  """
  _check_int("rate", rate, RATE_RANGE)
  _check_int("pitch", pitch, PITCH_RANGE)
  _check_variant(voice)
  chunks = []

  def collect(wav, numsamples, events):
    if wav and numsamples > 0:  # wav is NULL at the end; numsamples may be 0 mid-way
      chunks.append(np.ctypeslib.as_array(wav, (numsamples,)).copy())
    return 0

  callback = SYNTH_CALLBACK(collect)  # referenced until the library is unloaded
  with _fresh_library() as (lib, sample_rate):
    found = lib.espeak_SetVoiceByName(voice.encode()) == EE_OK
    if found:
      lib.espeak_SetSynthCallback(callback)
      for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch)):
        if lib.espeak_SetParameter(param, int(value), 0) != EE_OK:
          raise RuntimeError(f"espeak_SetParameter({param}, {value}) failed")
      lib.espeak_ng_SetRandSeed(RANDOM_SEED)
      _libc().srand(RANDOM_SEED)
      buffer = ctypes.create_string_buffer(text.encode("utf-8"))
      status = lib.espeak_Synth(buffer, ctypes.sizeof(buffer), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE,
                                None, None)
      if status != EE_OK or lib.espeak_Synchronize() != EE_OK:
        raise RuntimeError(f"eSpeak NG could not synthesise {text!r} with voice {voice!r} (status {status})")
  if not found:
    raise _no_voice(voice)  # outside: the message asks the library for its version
  if not chunks:
    raise RuntimeError(f"eSpeak NG returned no audio for {text!r} with voice {voice!r}")
  return np.concatenate(chunks), sample_rate

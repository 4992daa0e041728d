"""Config fields, each declared once: its default, its check, and the value that reproduces runs from
before it existed. The config, its validation and resume compatibility are generated from the
declarations, so adding a field is one line in the module that owns it::

    Field("data.top_db", 0.0, NONNEGATIVE, "> 0: floor each utterance's mel power at peak - top_db (dB)",
          legacy=0.0)

- :func:`build`: the ``ml_collections.ConfigDict`` of the declarations at their defaults. Field types
  come from the defaults, so a ``--config.x=...`` override of the wrong type and a typo in a key
  both fail, naming the key, as in any locked ConfigDict.
- :func:`check`: each field's check (``config.data.top_db must be a number >= 0, got -1.0``); a
  missing field, or a key no declaration names, is an error too.
- :func:`legacy_value`, :func:`with_legacy`, :func:`renamed`: a config saved before a field existed
  lacks it; the field's ``legacy`` value (``SINCE_START``: it has always been there) is what that
  config meant, so an old workdir resumes when the new field is at that value.

Which fields exist: ``experiments/base_config.py`` (those every experiment shares, and the
gradient methods' options from the registry) and each task's ``Task.config_fields``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any, Callable, Iterable, Optional, Union

import ml_collections
from ml_collections import config_dict

from rhel_jax.methods import SINCE_START  # one marker for config fields and method options

__all__ = ["SINCE_START", "Check", "Field", "Section", "Int", "Range", "OneOf", "Maybe", "TupleOf", "POSITIVE",
           "NONNEGATIVE", "FINITE", "FRACTION", "BOOL", "STRING", "build", "set_values", "check", "legacy_value",
           "with_legacy", "renamed"]


# ------------------------------------------------------------------------------------------------ checks

@dataclasses.dataclass(frozen=True)
class Check:
  """A test of one value: ``ok(value) -> bool``; ``need`` says what passes ("an int >= 1"), for the
  error (a callable when it is only known at check time, e.g. the registered methods)."""
  ok: Callable[[Any], bool]
  need: Union[str, Callable[[], str]]

  def describe(self) -> str:
    return self.need() if callable(self.need) else self.need

  def __call__(self, value, path: str) -> None:
    """Raises ValueError ``config.<path> must be <need>, got <value>`` when the value fails."""
    if not self.ok(value):
      raise ValueError(f"config.{path} must be {self.describe()}, got {value!r}")


def is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
  """A finite int or float (not a bool)."""
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def Int(minimum: int = 1, maximum: Optional[int] = None) -> Check:
  if maximum is None:
    return Check(lambda v: is_int(v) and v >= minimum, f"an int >= {minimum}")
  return Check(lambda v: is_int(v) and minimum <= v <= maximum, f"an int in [{minimum}, {maximum}]")


def Range(low: float, high: float, *, high_open: bool = False) -> Check:
  """A number in [low, high], or [low, high) with ``high_open``."""
  return Check(lambda v: is_number(v) and low <= v and (v < high if high_open else v <= high),
               f"a number in [{low:g}, {high:g}{')' if high_open else ']'}")


def OneOf(*choices) -> Check:
  return Check(lambda v: any(v == c and type(v) is type(c) for c in choices), f"one of {list(choices)}")


def Maybe(check: Check) -> Check:
  """None, or a value that passes ``check``."""
  return Check(lambda v: v is None or check.ok(v), lambda: f"{check.describe()} (or None)")


def TupleOf(item: Check, need: Union[str, Callable[[], str]], *, nonempty: bool = False,
            distinct: bool = False) -> Check:
  """A tuple (or list) of values that each pass ``item``; ``need`` words the whole."""
  def ok(v):
    return (isinstance(v, (tuple, list)) and (len(v) > 0 or not nonempty) and all(item.ok(x) for x in v)
            and (not distinct or len(set(v)) == len(v)))
  return Check(ok, need)


POSITIVE = Check(lambda v: is_number(v) and v > 0, "a number > 0")
NONNEGATIVE = Check(lambda v: is_number(v) and v >= 0, "a number >= 0")
FINITE = Check(is_number, "a finite number")
FRACTION = Range(0, 1, high_open=True)
BOOL = Check(lambda v: isinstance(v, bool), "True or False")
STRING = Check(lambda v: isinstance(v, str) and v != "", "a non-empty string")


# ------------------------------------------------------------------------------------------------ declarations

@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  Attributes:
    path: its dotted name in the config, e.g. ``"model.dt"``; the sections on the way are created.
    default: its value unless a config file or ``--config.<path>=`` sets another (copied per config).
    check: what a valid value is (:class:`Check`); every field has one.
    doc: one line for readers of the declaration.
    legacy: the value that reproduces runs from before the field existed (what a config saved
      without it meant); ``SINCE_START`` when every saved config has it.
    type: the ConfigDict field type when the default does not fix it: a None default (a
      placeholder) or a dict that is a value rather than a section.
    renamed_from: the field's former dotted name, for configs saved under it.
  """
  path: str
  default: Any
  check: Check
  doc: str = ""
  legacy: Any = SINCE_START
  type: Optional[type] = None
  renamed_from: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Section:
  """A group of fields (a sub-ConfigDict), declared only to document it or to name its keys: ``item``
  is what each key names ("tensor"), in the error for an unknown one."""
  path: str
  doc: str = ""
  item: str = "field"


Declarations = Iterable[Union[Field, Section]]


def _fields(declarations: Declarations) -> list[Field]:
  fields, seen = [], set()
  for d in declarations:
    if isinstance(d, Field):
      if d.path in seen:
        raise ValueError(f"config.{d.path} is declared twice")
      seen.add(d.path)
      fields.append(d)
  sections = {p.rsplit(".", i)[0] for p in seen for i in range(1, p.count(".") + 1)}
  for path in sorted(seen & sections):
    raise ValueError(f"config.{path} is declared both as a field and as a section")
  return fields


def _sections(declarations: Declarations) -> dict[str, Section]:
  """Every section path ("" is the root) -> its Section (a plain one where none is declared)."""
  declarations = list(declarations)
  out = {"": Section("")}
  for f in _fields(declarations):
    parts = f.path.split(".")
    for i in range(1, len(parts)):
      out.setdefault(".".join(parts[:i]), Section(".".join(parts[:i])))
  paths = {f.path for f in _fields(declarations)}
  for d in declarations:
    if isinstance(d, Section):
      if d.path in paths:
        raise ValueError(f"config.{d.path} is declared both as a field and as a section")
      out[d.path] = d
  return out


def _relative(path: str, prefix: str) -> Optional[str]:
  """``path`` below ``prefix`` ("" for the prefix itself), or None when it is not under it."""
  if not prefix:
    return path
  if path == prefix:
    return ""
  return path[len(prefix) + 1:] if path.startswith(prefix + ".") else None


_MISSING = object()


def _get(node, dotted: str):
  for part in dotted.split(".") if dotted else ():
    if not isinstance(node, (dict, ml_collections.ConfigDict)) or part not in node:
      return _MISSING
    node = node[part]
  return node


# ------------------------------------------------------------------------------------------------ the config

def build(declarations: Declarations) -> ml_collections.ConfigDict:
  """A ConfigDict holding every declared field at its default (typed FieldReferences where
  ``Field.type`` is set) and every declared section, empty or not."""
  declarations = list(declarations)
  root = ml_collections.ConfigDict()
  for path in _sections(declarations):
    node = root
    for part in path.split(".") if path else ():
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
  for f in _fields(declarations):
    *parents, leaf = f.path.split(".")
    node = root
    for part in parents:
      node = node[part]
    value = copy.deepcopy(f.default)
    node[leaf] = config_dict.FieldReference(value, field_type=f.type) if f.type is not None else value
  return root


def set_values(config: ml_collections.ConfigDict, values: dict[str, Any], where: str) -> None:
  """Sets each dotted field of ``values``; a path that is not a field of ``config`` is a ValueError
  naming it (``where``: the file or variant, for the message)."""
  for path, value in values.items():
    *parents, leaf = path.split(".")
    node = _get(config, ".".join(parents))
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"{where}: config.{path} is not a config field")
    node[leaf] = value


def check(config, declarations: Declarations, prefix: str = "", *, unknown_keys: bool = True) -> None:
  """Raises ValueError naming the first declared field that is missing or fails its check, or (with
  ``unknown_keys``, for a complete set of declarations) the first key of a section that no
  declaration names.

  ``config``: the whole config; or, with ``prefix`` (e.g. ``"data"``), the section at that path
  (only the declarations under it are checked; errors still name ``config.data.<field>``).
  """
  declarations = list(declarations)
  fields = [f for f in _fields(declarations) if _relative(f.path, prefix)]
  for f in fields:
    value = _get(config, _relative(f.path, prefix))
    if value is _MISSING:
      raise ValueError(f"config.{f.path} is missing")
    f.check(value, f.path)
  if not unknown_keys:
    return
  known: dict[str, set[str]] = {}
  for f in fields:
    parent, _, leaf = f.path.rpartition(".")
    known.setdefault(parent, set()).add(leaf)
  sections = _sections(declarations)
  for path in sections:
    if path:
      parent, _, leaf = path.rpartition(".")
      known.setdefault(parent, set()).add(leaf)
  for path, section in sections.items():
    rel = _relative(path, prefix)
    if rel is None:
      continue
    node = _get(config, rel)
    if node is _MISSING or not isinstance(node, (dict, ml_collections.ConfigDict)):
      raise ValueError(f"config{'.' if path else ''}{path} is missing")
    extra = sorted(set(node.keys()) - known.get(path, set()))
    if extra:
      raise ValueError(f"config{'.' if path else ''}{path}: unknown {section.item}(s) {extra}; "
                       f"known: {sorted(known.get(path, set()))}")


# ------------------------------------------------------------------------------------------------ saved configs

def _json(value):
  """``value`` as a saved config holds it (JSON: tuples become lists)."""
  return json.loads(json.dumps(value))


def legacy_value(declarations: Declarations, path: str):
  """What a config saved before ``path`` existed meant by it, in JSON form: the field's legacy value,
  or for a section the dict of its fields' legacy values; ``SINCE_START`` when the field, or one field
  of the section, has none (or ``path`` is not declared)."""
  fields = _fields(declarations)
  for f in fields:
    if f.path == path:
      return SINCE_START if f.legacy is SINCE_START else _json(f.legacy)
  inside = [f for f in fields if f.path.startswith(path + ".")]
  if not inside or any(f.legacy is SINCE_START for f in inside):
    return SINCE_START
  out: dict = {}
  for f in inside:
    *parents, leaf = f.path[len(path) + 1:].split(".")
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = _json(f.legacy)
  return out


def renamed(saved: dict, declarations: Declarations) -> dict:
  """A saved config (JSON form, not modified) with each field saved under a former name
  (``Field.renamed_from``) moved to its new one."""
  out = _json(saved)
  for f in _fields(declarations):
    if f.renamed_from is None:
      continue
    *old_parents, old_leaf = f.renamed_from.split(".")
    node = _get(out, ".".join(old_parents))
    if not isinstance(node, dict) or old_leaf not in node:
      continue
    value = node.pop(old_leaf)
    *parents, leaf = f.path.split(".")
    node = out
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def with_legacy(saved: dict, declarations: Declarations) -> dict:
  """A saved config (JSON form), renamed fields under their new names and each field it predates
  at its legacy value: the config as the code of today reads it."""
  out = renamed(saved, declarations)
  for f in _fields(declarations):
    if f.legacy is SINCE_START:
      continue
    *parents, leaf = f.path.split(".")
    node = out
    for part in parents:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        break
    else:
      node.setdefault(leaf, _json(f.legacy))
  return out

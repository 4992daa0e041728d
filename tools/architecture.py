"""Module diagram and layering rules, generated from the code.

    python -m tools.architecture --out docs/architecture.md   # regenerate the page (atomic write)
    python -m tools.architecture --check                      # exit 1: a rule is broken, or the page is stale

Every module of the project's top-level packages (each directory of the repository root that holds an
``__init__.py``, except ``tests``) is parsed with :mod:`ast`; nothing is imported or run. An import edge is
recorded for every import of a project module: ``import a.b``, ``from a import b`` (to the submodule
``a.b`` when there is one, else to ``a``), relative imports, imports inside functions ("lazy": they run
when the function is called, not when the module is imported; an ``if TYPE_CHECKING:`` block counts as
lazy too) and ``importlib.import_module("a.b")`` with a literal name. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``; those implicit edges to parent packages are not drawn.

Layering rules (each a function of the :class:`Graph` returning its violations as strings):

* :func:`core_isolation_violations`: the core library ``rhel_jax`` imports no other project package
  (``experiments``, ``data``, ``benchmarks``, ``examples``, ``tools``, a task package, ...).
* :func:`study_isolation_violations`: nothing outside ``studies`` imports a study; a side study can be
  read, run or deleted without touching the rest.
* :func:`report_isolation_violations`: the report code (``experiments.report``, ``summary``,
  ``probe_table``) imports neither the training code nor a task's own module: it knows tasks only
  through the ``experiments.tasks`` interface.
* :func:`module_level_cycles`: no cycle of module-level imports (such a cycle makes the import order
  matter and breaks on a partially initialised module).
* :func:`lazy_cycles`: cycles that close only through a lazy import; listed, and a violation too, since
  a cycle is a cycle even when a function body hides it from the import system.

The page also shows the layers (the top-level packages in dependency order, with what each imports and
is imported by, from the same graph) and a guide to where a new method, task, config field,
measurement, study or result goes (``GUIDE``; ``tests/test_architecture.py`` checks that every file it
names exists), with a worked example of adding a config field (``CONFIG_FIELD_EXAMPLE``;
``tests/test_config_schema.py`` holds it to the code). It holds the git revision it was generated at;
``--check`` ignores that line, so the page is stale only when a module, an import edge, a docstring
summary, a rule result or the guide has changed.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Callable, Iterable, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = "rhel_jax"
STUDIES = "studies"
REPORT_MODULES = ("experiments.report", "experiments.summary", "experiments.probe_table")
# What the report code must not import: the training code, and a task's own module (the interface,
# ``experiments.tasks`` and ``experiments.tasks.base``, is what it may use).
REPORT_FORBIDDEN = ("experiments.train", "experiments.trainer")
TASK_INTERFACE = ("experiments.tasks", "experiments.tasks.base")
DEFAULT_OUT = "docs/architecture.md"
NOT_PACKAGES = frozenset({"tests", "build", "dist", "docs", "runs"})
COMMAND = "python -m tools.architecture"


@dataclasses.dataclass(frozen=True)
class Module:
  name: str            # dotted name, e.g. "rhel_jax.gradients"; a package is named by its __init__.py
  path: str            # relative to the root, POSIX separators
  is_package: bool
  summary: str         # first paragraph of the docstring, on one line ("" if none)


@dataclasses.dataclass(frozen=True, order=True)
class Import:
  source: str
  target: str
  lazy: bool           # inside a function body or an `if TYPE_CHECKING:` block
  line: int


@dataclasses.dataclass
class Graph:
  root: pathlib.Path
  packages: tuple[str, ...]
  modules: dict[str, Module]
  imports: list[Import]

  def edges(self) -> dict[tuple[str, str], bool]:
    """``(source, target) -> lazy``; an edge is lazy only when every import behind it is lazy."""
    out: dict[tuple[str, str], bool] = {}
    for imp in self.imports:
      key = (imp.source, imp.target)
      out[key] = out.get(key, True) and imp.lazy
    return dict(sorted(out.items()))

  def adjacency(self, *, include_lazy: bool) -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {name: set() for name in self.modules}
    for (src, dst), lazy in self.edges().items():
      if include_lazy or not lazy:
        adj.setdefault(src, set()).add(dst)
        adj.setdefault(dst, set())
    return adj


# ------------------------------------------------------------------------------------------------ discovery

def discover_packages(root: pathlib.Path) -> tuple[str, ...]:
  """Top-level packages: directories of ``root`` with an ``__init__.py`` (not tests, docs or hidden ones)."""
  return tuple(sorted(p.name for p in root.iterdir()
                      if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_")
                      and p.name not in NOT_PACKAGES and (p / "__init__.py").is_file()))


def _module_files(root: pathlib.Path, package: str) -> Iterable[tuple[str, pathlib.Path, bool]]:
  for dirpath, dirnames, filenames in os.walk(root / package):
    dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and not d.startswith((".", "__")))
    rel = pathlib.Path(dirpath).relative_to(root)
    for filename in sorted(filenames):
      stem, ext = os.path.splitext(filename)
      if ext != ".py" or not stem.isidentifier():
        continue
      if stem == "__init__":
        yield ".".join(rel.parts), pathlib.Path(dirpath) / filename, True
      else:
        yield ".".join((*rel.parts, stem)), pathlib.Path(dirpath) / filename, False


def _summary(tree: ast.Module) -> str:
  doc = ast.get_docstring(tree)
  if not doc:
    return ""
  paragraph = " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())
  if len(paragraph) > 200:  # a long first paragraph: keep its first sentence
    paragraph = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]
  return paragraph


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
         (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _raw_imports(tree: ast.Module) -> list[tuple[ast.AST, bool]]:
  """Every import statement and ``import_module``/``__import__`` call, with whether it is lazy."""
  found: list[tuple[ast.AST, bool]] = []

  def visit(node: ast.AST, lazy: bool) -> None:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      found.append((node, lazy))
    elif isinstance(node, ast.Call):
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
      if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
          and isinstance(node.args[0].value, str):
        found.append((node, lazy))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      for child in ast.iter_child_nodes(node):
        # Decorators and default values run at definition time; the body runs when called.
        body = node.body if isinstance(node.body, list) else [node.body]
        visit(child, lazy or any(child is b for b in body))
      return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
      for child in node.body:
        visit(child, True)
      for child in node.orelse:
        visit(child, lazy)
      return
    for child in ast.iter_child_nodes(node):
      visit(child, lazy)

  visit(tree, False)
  return found


def _resolve(module: Module, node: ast.AST, modules: dict[str, Module], packages: tuple[str, ...]) -> list[str]:
  """Project modules a raw import refers to (empty for third-party imports)."""
  def owned(name: str) -> bool:
    return name.split(".")[0] in packages

  def longest_prefix(name: str) -> Optional[str]:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
      candidate = ".".join(parts[:i])
      if candidate in modules:
        return candidate
    return None

  targets: list[Optional[str]] = []
  if isinstance(node, ast.Import):
    targets = [longest_prefix(alias.name) for alias in node.names if owned(alias.name)]
  elif isinstance(node, ast.ImportFrom):
    if node.level:
      package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
      keep = len(package) - (node.level - 1)
      if keep <= 0:
        return []  # beyond the top-level package: not ours to resolve
      base = ".".join(package[:keep] + ([node.module] if node.module else []))
    else:
      base = node.module or ""
    if not owned(base):
      return []
    for alias in node.names:
      sub = f"{base}.{alias.name}"
      targets.append(sub if alias.name != "*" and sub in modules else longest_prefix(base))
  else:  # import_module("a.b") / __import__("a.b")
    name = node.args[0].value
    if not name.startswith(".") and owned(name):
      targets = [longest_prefix(name)]
  return sorted({t for t in targets if t is not None and t != module.name})


def build_graph(root: pathlib.Path = ROOT, packages: Optional[Iterable[str]] = None) -> Graph:
  """Parses every module of ``packages`` (default: :func:`discover_packages`) under ``root``."""
  root = pathlib.Path(root).resolve()
  packages = tuple(sorted(packages)) if packages is not None else discover_packages(root)
  trees: dict[str, ast.Module] = {}
  modules: dict[str, Module] = {}
  for package in packages:
    for name, path, is_package in _module_files(root, package):
      source = path.read_text(encoding="utf-8")
      tree = ast.parse(source, filename=str(path))
      trees[name] = tree
      modules[name] = Module(name, path.relative_to(root).as_posix(), is_package, _summary(tree))
  imports = set()
  for name, tree in trees.items():
    for node, lazy in _raw_imports(tree):
      for target in _resolve(modules[name], node, modules, packages):
        imports.add(Import(name, target, lazy, node.lineno))
  return Graph(root, packages, dict(sorted(modules.items())), sorted(imports))


# ------------------------------------------------------------------------------------------------ rules

def _top(name: str) -> str:
  return name.split(".")[0]


def core_isolation_violations(graph: Graph, core: str = CORE) -> list[str]:
  """Imports from the core library into any other project package (module-level or lazy)."""
  return [f"{imp.source} imports {imp.target} ({graph.modules[imp.source].path}:{imp.line}"
          f"{', lazy' if imp.lazy else ''})"
          for imp in graph.imports if _top(imp.source) == core and _top(imp.target) != core]


def study_isolation_violations(graph: Graph, studies: str = STUDIES) -> list[str]:
  """Imports of a study from any module outside the studies package (module-level or lazy)."""
  return [f"{imp.source} imports {imp.target} ({graph.modules[imp.source].path}:{imp.line}"
          f"{', lazy' if imp.lazy else ''})"
          for imp in graph.imports if _top(imp.target) == studies and _top(imp.source) != studies]


def report_isolation_violations(graph: Graph) -> list[str]:
  """Imports of the training code or of a task's own module by the report code."""
  def forbidden(target: str) -> bool:
    return target in REPORT_FORBIDDEN or (target.startswith("experiments.tasks.") and target not in TASK_INTERFACE)
  return [f"{imp.source} imports {imp.target} ({graph.modules[imp.source].path}:{imp.line}"
          f"{', lazy' if imp.lazy else ''})"
          for imp in graph.imports if imp.source in REPORT_MODULES and forbidden(imp.target)]


def _strongly_connected(adj: dict[str, set[str]]) -> list[list[str]]:
  """Tarjan's strongly connected components (iterative), each sorted."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  components = []
  counter = 0
  for start in sorted(adj):
    if start in index:
      continue
    work = [(start, iter(sorted(adj[start])))]
    index[start] = low[start] = counter
    counter += 1
    stack.append(start)
    on_stack.add(start)
    while work:
      node, children = work[-1]
      for child in children:
        if child not in index:
          index[child] = low[child] = counter
          counter += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(adj[child]))))
          break
        if child in on_stack:
          low[node] = min(low[node], index[child])
      else:
        work.pop()
        if work:
          low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
          component = []
          while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == node:
              break
          components.append(sorted(component))
  return components


def find_cycles(adj: dict[str, set[str]], limit: int = 100) -> list[list[str]]:
  """Elementary cycles (each once, starting at its smallest module), searched within strongly connected
  components; at most ``limit``."""
  cycles: list[list[str]] = []
  for component in _strongly_connected(adj):
    if len(component) < 2 and component[0] not in adj[component[0]]:
      continue
    members = set(component)
    for start in component:  # sorted: a path from `start` visits only larger modules
      path, on_path = [start], {start}
      work = [iter(sorted(adj[start] & members))]
      while work:
        for nxt in work[-1]:
          if nxt == start:
            cycles.append(list(path))
            if len(cycles) >= limit:
              return cycles
          elif nxt > start and nxt not in on_path:
            path.append(nxt)
            on_path.add(nxt)
            work.append(iter(sorted(adj[nxt] & members)))
            break
        else:
          work.pop()
          on_path.discard(path.pop())
  return sorted(cycles)


def _format_cycle(cycle: list[str], edges: dict[tuple[str, str], bool]) -> str:
  out = cycle[0]
  for src, dst in zip(cycle, cycle[1:] + cycle[:1]):
    out += (" -.-> " if edges.get((src, dst), False) else " --> ") + dst
  return out


def module_level_cycles(graph: Graph) -> list[str]:
  """Cycles of imports that all run at module import time."""
  edges = graph.edges()
  return [_format_cycle(c, edges) for c in find_cycles(graph.adjacency(include_lazy=False))]


def lazy_cycles(graph: Graph) -> list[str]:
  """Cycles that need at least one lazy import (drawn ``-.->``) to close."""
  edges = graph.edges()
  return [_format_cycle(c, edges) for c in find_cycles(graph.adjacency(include_lazy=True))
          if any(edges[(s, d)] for s, d in zip(c, c[1:] + c[:1]))]


@dataclasses.dataclass(frozen=True)
class Rule:
  name: str
  check: Callable[[Graph], list[str]]


RULES = (
    Rule(f"the core library `{CORE}` imports no other project package", core_isolation_violations),
    Rule(f"no module outside `{STUDIES}` imports a study", study_isolation_violations),
    Rule("the report code (" + ", ".join(f"`{m}`" for m in REPORT_MODULES) + ") imports neither the "
         "training code nor a task's own module", report_isolation_violations),
    Rule("no import cycle among modules (module-level imports)", module_level_cycles),
    Rule("no import cycle that closes through a lazy (function-level) import", lazy_cycles),
)


def check_rules(graph: Graph) -> dict[str, list[str]]:
  """Rule name -> violations (empty when the rule holds)."""
  return {rule.name: rule.check(graph) for rule in RULES}


# ------------------------------------------------------------------------------------------------ page

# Where a new piece goes. Hand-written; every backquoted path in it must exist (tests/test_architecture.py).
GUIDE = (
    ("A gradient method",
     "a function `(params, model, inputs_tm, targets, mask, loss_fn, **options) -> (loss, grads)` in "
     "`rhel_jax/gradients.py` (or a module of its own in `rhel_jax/`), registered with "
     "`rhel_jax.register(rhel_jax.Method(...))` (`rhel_jax/methods.py`). Its `Option`s are the config "
     "fields `config.method.<config_key>`, declared by the registry: `experiments/base_config.py` makes each "
     "a schema field with its kind's check and the option's `legacy` value; the trainer, the report and the "
     "benchmarks read names, options and colours from the registry, and `tests/test_method_contract.py` "
     "checks the method against its declared contract. Nothing else changes."),
    ("A task",
     "a `Task` subclass (the interface: `experiments/tasks/base.py`) in its own module under "
     "`experiments/tasks/`, registered with `experiments.tasks.register` and imported by "
     "`experiments/tasks/__init__.py`, its own config fields declared in its `config_fields`; the values its "
     "protocol chooses in a config module of its own beside `experiments/copy_paste.py` (one dict per variant, "
     "built by `experiments/base_config.py`); its dataset code, if any, in `data/`. The trainer and the "
     "reports read all they need from the class: loss, metrics, primary metric and its description, the "
     "paper's Table 1 entry per method (`paper_table1`), a per-step metric's table, chance and target "
     "levels; no task name appears in the report code. `tests/test_tasks.py` checks that, and trains a tiny "
     "synthetic task end to end."),
    ("A config field",
     "one `Field` declaration (`experiments/schema.py`): its default, its check and its `legacy` value, the "
     "value that reproduces runs from before it existed (or `SINCE_START`). A field every experiment shares "
     "goes in `FIELDS` of `experiments/base_config.py`, a task's own in its `Task.config_fields` (Heidelberg "
     "Digits' `data.*` in `experiments/hd_data.py`), a method option in its `Option`. The config, the check "
     "that names the field before any compute, and the resume of workdirs saved before it (`legacy`; a "
     "renamed field: `renamed_from`) all come from the declaration; a variant that wants another value sets "
     "it in its dict. A check that spans fields goes in `check_relations` (`experiments/base_config.py`, or "
     "the task's). Worked example below."),
    ("A measurement of cost or fidelity",
     "a module in `benchmarks/` (`python -m benchmarks.<name> --out docs/results/<folder>`); speed and "
     "memory targets are checked there, not in timed tests."),
    ("A side study",
     "a package of its own under `studies/` (like `studies/hd_speakers/`) holding its modules, its "
     "`NOTES.md` (the path: probes, superseded protocols, with the command of each number) and its "
     "results (`studies/hd_speakers/results/`). Nothing outside `studies` imports it (a rule below)."),
    ("A result the docs cite",
     "a folder of `docs/results/` named for what it holds, listed in `docs/results/README.md`, its numbers "
     "quoted in `docs/results.md` with the command and git revision that wrote them. A result that is "
     "superseded leaves the tree and is listed in `docs/results/archive.md` with the commit that holds it."),
)


# The worked example of adding a config field (markdown). tests/test_config_schema.py holds it to the code:
# the declaration is the one in experiments/hd_data.py, and the quoted error is the one the check raises.
CONFIG_FIELD_EXAMPLE = """\
Adding `data.top_db` once took four files: its default in the task's config file, its check in
`hd_data.validate`, its resume value in `workdir.ADDED_FIELDS` and again in `hd_data.FEATURE_DEFAULTS`.
Now it is one declaration, in the module that owns the `data` section (`experiments/hd_data.py`):

```python
Field("data.top_db", 0.0, NONNEGATIVE, "> 0: floor each utterance's mel power at its peak - top_db (dB)",
      legacy=0.0),
```

and everything else follows from it (`experiments/schema.py`):

- every Heidelberg Digits config has `data.top_db = 0.0`, a float field: `--config.data.top_db=abc` is a
  flags error, and a typo in the key fails naming it, as in any locked ConfigDict;
- `--config.data.top_db=-1` stops before any compute with
  `--config: config.data.top_db must be a number >= 0, got -1.0`;
- a workdir saved before the field existed lacks it; it resumes while the value is the `legacy` one,
  `0.0` (what such a config meant), and is refused naming `data.top_db` otherwise. `with_added_fields`
  reads such a config with `top_db` at `0.0`, so it names the same feature set and TFDS cache as before;
- a variant that wants another value says so in its dict, as `dev` does (`"data.top_db": 40.0` in
  `experiments/heidelberg_digits.py`), and nothing else changes.

The value's use (here the feature itself, `HDConfig.top_db` in `data/heidelberg_digits.py`) is the
only other code. A shared field is declared the same way in `experiments/base_config.py`.
"""


def package_imports(graph: Graph) -> dict[str, set[str]]:
  """Top-level package -> the other top-level packages its modules import (module-level or lazy)."""
  out: dict[str, set[str]] = {p: set() for p in graph.packages}
  for (src, dst), _ in graph.edges().items():
    if _top(src) != _top(dst):
      out.setdefault(_top(src), set()).add(_top(dst))
  return out


def layer_order(graph: Graph) -> list[str]:
  """The top-level packages, each after the packages it imports (names break ties; a cycle's
  members follow in name order)."""
  deps = package_imports(graph)
  order: list[str] = []
  left = sorted(deps)
  while left:
    ready = [p for p in left if deps[p] <= set(order)] or left[:1]
    order.append(ready[0])
    left.remove(ready[0])
  return order


def layers(graph: Graph) -> list[str]:
  """Markdown table of the top-level packages in dependency order."""
  deps = package_imports(graph)
  users = {p: sorted(q for q in deps if p in deps[q]) for p in deps}
  code = lambda names: ", ".join(f"`{n}`" for n in names) or "-"
  lines = ["| layer | what | modules | imports | imported by |", "|---|---|---|---|---|"]
  for package in layer_order(graph):
    count = sum(_top(name) == package for name in graph.modules)
    summary = graph.modules[package].summary if package in graph.modules else ""
    lines.append(f"| `{package}` | {_md_cell(summary) or '*(no docstring)*'} | {count} | "
                 f"{code(sorted(deps[package]))} | {code(users[package])} |")
  return lines


def _node_id(name: str, prefix: str = "m_") -> str:
  return prefix + name.replace(".", "__")


def _md_cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def mermaid(graph: Graph) -> list[str]:
  """A ``flowchart`` with one (nested) subgraph per package; lazy imports dashed."""
  lines = ["```mermaid", "flowchart LR"]
  children: dict[str, list[str]] = {}
  for name, module in graph.modules.items():
    parent = name if module.is_package else name.rpartition(".")[0]
    children.setdefault(parent, []).append(name)
  packages = sorted(n for n, m in graph.modules.items() if m.is_package)

  def emit(package: str, depth: int) -> None:
    pad = "  " * depth
    lines.append(f'{pad}subgraph {_node_id(package, "p_")}["{package}"]')
    for name in children.get(package, []):
      module = graph.modules[name]
      label = "__init__" if module.is_package else name.rpartition(".")[2]
      lines.append(f'{pad}  {_node_id(name)}["{label}"]')
    for sub in packages:
      if sub.rpartition(".")[0] == package:
        emit(sub, depth + 1)
    lines.append(f"{pad}end")

  for package in packages:
    if "." not in package:
      emit(package, 1)
  for (src, dst), lazy in graph.edges().items():
    lines.append(f"  {_node_id(src)} {'-.->' if lazy else '-->'} {_node_id(dst)}")
  if CORE in graph.packages:
    lines.append(f"  style {_node_id(CORE, 'p_')} fill:#e8f0fe,stroke:#4a6fa5")
  lines.append("```")
  return lines


def git_revision(root: pathlib.Path) -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip() or "unknown"
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


_REVISION = re.compile(r"at revision `[^`]*`")


# Where the JAX ecosystem's maintained libraries do the work, and what stays hand-written and why.
# (concern, library module or None, file, note). A library's file must import it, and every
# backquoted path must exist (tests/test_architecture.py).
LIBRARIES = (
    ("Checkpoints", "orbax.checkpoint", "experiments/checkpoints.py",
     "Orbax's `CheckpointManager`: saves in the background, each process writes its own shards, data "
     "checksummed, the newest two kept; anyone reads a run's weights with Orbax alone (README). The "
     "flax msgpack files of older workdirs are read once and replaced."),
    ("Downloading the official HD archive", "tensorflow_datasets", "data/heidelberg_digits.py",
     "TFDS's `DownloadManager` (retries, a cache, TFDS's checksums record) and TFDS's `manual_dir`, in "
     "place of urllib and our own retry loop."),
    ("Several processes", "jax.experimental.multihost_utils", "experiments/sharding.py",
     "`jax.distributed` with gloo on the CPU; global arrays from `jax.make_array_from_callback`; metrics "
     "gathered with `process_allgather`."),
    ("Configs and flags of a run", "ml_collections", "experiments/main.py",
     "ml-collections config files with absl flags."),
    ("Optimizers and schedules", "optax", "experiments/optim.py", "optax; nothing hand-written."),
    ("Progress and ETA", None, "experiments/progress.py",
     "kept: one absl log line per epoch carries elapsed time and the ETA over every (method, epoch), with "
     "resumed epochs counted as done. tqdm (installed with TFDS) draws a terminal bar, which in a log file "
     "or under a job scheduler becomes carriage-return frames; TFDS's own bars are switched off in "
     "`data/heidelberg_digits.py` for that reason."),
    ("Stopping on SIGINT/SIGTERM", None, "experiments/progress.py",
     "kept: a flag the epoch loop checks, so a jitted epoch is never cut, and `agreed_signal` in "
     "`experiments/sharding.py` (one all-gather per epoch) so every process stops at the same epoch. "
     "JAX's preemption sync point covers only SIGTERM, and only in a `jax.distributed` run."),
    ("Argument parsing of benchmarks and tools", "argparse", "benchmarks/run.py",
     "the standard library's parser, not absl flags: those are process-wide and defined at import, and the "
     "benchmarks import one another (`benchmarks/fidelity.py` imports `benchmarks/core_check.py`) and are "
     "imported by tests, which would define a flag twice."),
    ("Markdown tables", None, "experiments/summary.py",
     "kept: rows are f-strings of a few cells; tabulate (which pandas' `to_markdown` also needs) would be "
     "a new dependency for that, and the tests compare rows as exact strings."),
    ("Atomic files and JSONL", None, "experiments/checkpoints.py",
     "kept: temporary file, fsync and `os.replace` (about 15 lines of the standard library); a package "
     "would add a dependency and no safety."),
    ("Extracting the HD archive", None, "data/heidelberg_digits.py",
     "kept: `tarfile` with the standard library's `data` filter (no member outside the folder), staged and "
     "renamed, cached by the archive's md5, the same for an archive from `manual_dir` and a downloaded one; "
     "a truncated archive is an error that names the file."),
    ("Bit-level comparison of results", None, "tools/reproduce.py",
     "kept: per tensor, how many entries differ and the largest absolute and ulp difference, over every "
     "tensor; numpy's `assert_array_max_ulp` raises on the first array with only its largest ulp distance."),
)


def render(graph: Graph, revision: str, out: str = DEFAULT_OUT) -> str:
  """The whole page (deterministic for a given tree and revision)."""
  results = check_rules(graph)
  n_edges = graph.edges()
  lines = [
      "# Architecture",
      "",
      f"Generated from the code at revision `{revision}` by `{COMMAND} --out {out}`; do not edit by hand.",
      f"`{COMMAND} --check` (run by `tests/test_architecture.py`) fails when a rule below is broken or this "
      "page is out of date with the code.",
      "",
      f"{len(graph.modules)} modules in the packages {', '.join(f'`{p}`' for p in graph.packages)}; "
      f"{sum(not lazy for lazy in n_edges.values())} module-level import edges (solid) and "
      f"{sum(n_edges.values())} lazy ones (dashed: imported only inside a function, at call time). "
      "An arrow points from the importing module to the imported one.",
      "",
      "## Layers",
      "",
      "The top-level packages in dependency order: each comes after the packages it imports (counting "
      "lazy imports too), so the core library and the datasets come first and the measurements, the side "
      "studies and the developer tools last.",
      "",
      *layers(graph),
      "",
      "## Where a new piece goes",
      "",
      *[f"- **{what}**: {where}" for what, where in GUIDE],
      "",
      "### A config field, worked through",
      "",
      *CONFIG_FIELD_EXAMPLE.splitlines(),
      "",
      "## Libraries, and what stays hand-written",
      "",
      "| concern | library | where | note |",
      "|---|---|---|---|",
      *[f"| {what} | {f'`{lib}`' if lib else 'hand-written'} | `{where}` | {_md_cell(note)} |"
        for what, lib, where, note in LIBRARIES],
      "",
      "## Module diagram",
      "",
      *mermaid(graph),
      "",
      "## Layering rules",
      "",
      "| rule | result |",
      "|---|---|",
  ]
  for name, violations in results.items():
    lines.append(f"| {_md_cell(name)} | {'holds' if not violations else f'**{len(violations)} violation(s)**'} |")
  for name, violations in results.items():
    if violations:
      lines += ["", f"Violations of: {name}", ""] + [f"- `{v}`" for v in violations]
  lines += ["", "## Modules", "", "| module | file | summary |", "|---|---|---|"]
  for name, module in graph.modules.items():
    lines.append(f"| `{name}` | `{module.path}` | {_md_cell(module.summary) or '*(no docstring)*'} |")
  return "\n".join(lines) + "\n"


def _normalise(text: str) -> str:
  return _REVISION.sub("at revision `*`", text)


def atomic_write(path: pathlib.Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def stale_diff(graph: Graph, path: pathlib.Path, out: str = DEFAULT_OUT) -> list[str]:
  """Unified diff (ignoring the revision) between the page on disk and the page the code gives; [] if fresh."""
  want = render(graph, "*", out)
  have = path.read_text(encoding="utf-8") if path.is_file() else ""
  if _normalise(have) == _normalise(want):
    return []
  return list(difflib.unified_diff(_normalise(have).splitlines(), _normalise(want).splitlines(),
                                   f"{out} (on disk)", f"{out} (from the code)", lineterm="", n=1)) or ["missing"]


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help=f"page to write or check (default: <root>/{DEFAULT_OUT})")
  parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a rule is broken or the "
                      "page is out of date")
  parser.add_argument("--root", default=str(ROOT), help="repository root (default: this checkout)")
  args = parser.parse_args(argv)
  root = pathlib.Path(args.root).resolve()
  path = pathlib.Path(args.out).resolve() if args.out else root / DEFAULT_OUT
  try:
    out = path.relative_to(root).as_posix()
  except ValueError:
    out = str(path)
  graph = build_graph(root)
  results = check_rules(graph)
  broken = {name: v for name, v in results.items() if v}
  for name, violations in broken.items():
    print(f"RULE BROKEN: {name}", file=sys.stderr)
    for v in violations:
      print(f"  {v}", file=sys.stderr)
  if args.check:
    diff = stale_diff(graph, path, out)
    if diff:
      print(f"{out} is out of date with the code; regenerate it with `{COMMAND} --out {out}`:", file=sys.stderr)
      print("\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""), file=sys.stderr)
    status = 1 if broken or diff else 0
    if not status:
      print(f"{out}: up to date; {len(results)} rules hold ({len(graph.modules)} modules)")
    return status
  atomic_write(path, render(graph, git_revision(root), out))
  print(f"wrote {out}: {len(graph.modules)} modules, {len(graph.edges())} edges, "
        f"{len(results) - len(broken)}/{len(results)} rules hold")
  return 1 if broken else 0


if __name__ == "__main__":
  sys.exit(main())

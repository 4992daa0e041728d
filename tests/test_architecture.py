"""docs/architecture.md is current and the layering rules hold on the real tree; on small synthetic trees
the rules do catch a core module importing an experiment, a study imported from outside, report code
importing the trainer or a task's module, and import cycles."""
import contextlib
import io
import pathlib
import re
import tempfile
import textwrap

from absl.testing import absltest

from tools import architecture

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
  for rel, source in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
  return root


def run_main(*argv) -> tuple[int, str]:
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    status = architecture.main(list(argv))
  return status, err.getvalue()


class RealTreeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.graph = architecture.build_graph(ROOT)

  def test_finds_the_packages_and_the_core(self):
    self.assertIn("rhel_jax", self.graph.packages)
    self.assertIn("experiments", self.graph.packages)
    self.assertNotIn("tests", self.graph.packages)
    self.assertIn("rhel_jax", self.graph.modules)
    # Every Python file of every package is a module of the graph.
    files = {p.relative_to(ROOT).as_posix() for pkg in self.graph.packages for p in (ROOT / pkg).rglob("*.py")
             if all(part.isidentifier() for part in p.relative_to(ROOT).with_suffix("").parts)
             and "__pycache__" not in p.parts}
    self.assertEqual(files, {m.path for m in self.graph.modules.values()})

  def test_core_imports_nothing_outside_itself(self):
    self.assertEqual(architecture.core_isolation_violations(self.graph), [])

  def test_no_import_cycles(self):
    self.assertEqual(architecture.module_level_cycles(self.graph), [])
    self.assertEqual(architecture.lazy_cycles(self.graph), [])

  def test_studies_and_the_report_code_are_isolated(self):
    self.assertIn("studies", self.graph.packages)
    self.assertEqual(architecture.study_isolation_violations(self.graph), [])
    self.assertEqual(architecture.report_isolation_violations(self.graph), [])

  def test_the_guide_names_files_that_exist(self):
    paths = [p for _, text in architecture.GUIDE for p in re.findall(r"`([\w./]+/[\w./]*)`", text)]
    self.assertGreater(len(paths), 10)
    self.assertEqual([p for p in paths if not (ROOT / p).exists()], [])

  def test_the_experiments_guide_lists_every_module_of_the_folder(self):
    guide = (ROOT / "experiments" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", guide, re.M))
    present = {p.relative_to(ROOT / "experiments").as_posix() for p in (ROOT / "experiments").rglob("*.py")}
    self.assertEqual(sorted(present - listed), [], "modules missing from experiments/README.md")
    self.assertEqual(sorted(listed - present), [], "experiments/README.md lists modules that do not exist")

  def test_the_library_table_names_files_that_exist_and_import_their_library(self):
    for what, library, where, note in architecture.LIBRARIES:
      paths = [where] + re.findall(r"`([\w./]+/[\w./]*)`", note)
      self.assertEqual([p for p in paths if not (ROOT / p).exists()], [], what)
      if library:  # the module really imports the library it is credited with
        last = re.escape(library.split(".")[-1])
        self.assertRegex((ROOT / where).read_text(), rf"(?m)^\s*(from|import)\s.*\b{last}\b", what)

  def test_layers_put_each_package_after_what_it_imports(self):
    order = architecture.layer_order(self.graph)
    self.assertEqual(sorted(order), sorted(self.graph.packages))
    for package, deps in architecture.package_imports(self.graph).items():
      self.assertTrue(all(order.index(d) < order.index(package) for d in deps), (package, deps))

  def test_page_is_up_to_date(self):
    status, err = run_main("--check", "--root", str(ROOT))
    self.assertEqual(status, 0, f"{err}\nRegenerate: python -m tools.architecture --out docs/architecture.md")


class SyntheticTreeTest(absltest.TestCase):

  def tmp(self) -> pathlib.Path:
    # absltest's create_tempdir needs parsed absl flags, which pytest does not provide.
    d = tempfile.TemporaryDirectory()
    self.addCleanup(d.cleanup)
    return pathlib.Path(d.name)

  def test_core_importing_an_experiment_is_caught(self):
    root = write_tree(self.tmp(), {
        "rhel_jax/__init__.py": '"""Core."""\nfrom rhel_jax import model\n',
        "rhel_jax/model.py": '"""Model."""\nimport numpy\n',
        "rhel_jax/bad.py": """\
            \"\"\"Reaches into the experiments, lazily.\"\"\"
            def f():
              from experiments.train import run
              return run
            """,
        "experiments/__init__.py": "",
        "experiments/train.py": "from rhel_jax import model\nrun = 1\n",
    })
    graph = architecture.build_graph(root)
    violations = architecture.core_isolation_violations(graph)
    self.assertLen(violations, 1)
    self.assertIn("rhel_jax.bad imports experiments.train", violations[0])
    self.assertIn("lazy", violations[0])
    self.assertEqual(architecture.module_level_cycles(graph), [])
    status, err = run_main("--check", "--root", str(root))
    self.assertEqual(status, 1)
    self.assertIn("imports experiments.train", err)

  def test_a_study_imported_from_outside_is_caught(self):
    root = write_tree(self.tmp(), {
        "studies/__init__.py": "",
        "studies/s/__init__.py": "",
        "studies/s/probe.py": "from experiments import report\n",      # a study may import the rest
        "experiments/__init__.py": "",
        "experiments/report.py": "",
        "benchmarks/__init__.py": "",
        "benchmarks/b.py": "def f():\n  from studies.s import probe\n",
    })
    graph = architecture.build_graph(root)
    violations = architecture.study_isolation_violations(graph)
    self.assertLen(violations, 1)
    self.assertIn("benchmarks.b imports studies.s.probe", violations[0])
    self.assertIn("lazy", violations[0])
    self.assertEqual(run_main("--check", "--root", str(root))[0], 1)

  def test_report_code_importing_the_trainer_or_a_task_module_is_caught(self):
    root = write_tree(self.tmp(), {
        "experiments/__init__.py": "",
        "experiments/trainer.py": "",
        "experiments/tasks/__init__.py": "from experiments.tasks import base, copy\n",
        "experiments/tasks/base.py": "",
        "experiments/tasks/copy.py": "",
        "experiments/report.py": "from experiments import tasks\nfrom experiments.tasks import base\n",
        "experiments/summary.py": "from experiments.trainer import x\n",
        "experiments/probe_table.py": "from experiments.tasks.copy import metrics\n",
    })
    violations = architecture.report_isolation_violations(architecture.build_graph(root))
    self.assertEqual([v.split(" (")[0] for v in violations],
                     ["experiments.probe_table imports experiments.tasks.copy",
                      "experiments.summary imports experiments.trainer"])

  def test_cycles_are_caught_module_level_and_lazy(self):
    root = write_tree(self.tmp(), {
        "experiments/__init__.py": "",
        "experiments/a.py": "from . import b\n",                      # relative, submodule by name
        "experiments/b.py": "import experiments.a\n",
        "experiments/c.py": "from experiments.d import thing\n",
        "experiments/d.py": "def thing():\n  from experiments import c\n",  # closes only at call time
        "experiments/e.py": "from experiments.a import *\n",               # no cycle: e is imported by none
    })
    graph = architecture.build_graph(root)
    self.assertEqual(architecture.module_level_cycles(graph), ["experiments.a --> experiments.b --> experiments.a"])
    self.assertEqual(architecture.lazy_cycles(graph), ["experiments.c --> experiments.d -.-> experiments.c"])
    self.assertEqual(architecture.core_isolation_violations(graph), [])
    status, err = run_main("--check", "--root", str(root))
    self.assertEqual(status, 1)
    self.assertIn("experiments.a --> experiments.b", err)

  def test_stale_page_is_caught_and_regeneration_fixes_it(self):
    root = write_tree(self.tmp(), {
        "rhel_jax/__init__.py": '"""Core."""\n',
        "rhel_jax/model.py": '"""Model."""\n',
    })
    self.assertEqual(run_main("--check", "--root", str(root))[0], 1)  # no page yet
    self.assertEqual(run_main("--root", str(root))[0], 0)
    page = (root / "docs/architecture.md").read_text()
    self.assertIn("```mermaid\nflowchart", page)
    self.assertIn("| `rhel_jax.model` | `rhel_jax/model.py` | Model. |", page)
    self.assertEqual(run_main("--check", "--root", str(root))[0], 0)
    # Only the revision differs: still current.
    (root / "docs/architecture.md").write_text(page.replace("at revision `unknown`", "at revision `abc1234`"))
    self.assertEqual(run_main("--check", "--root", str(root))[0], 0)
    # A new import edge makes the page stale.
    (root / "rhel_jax/gradients.py").write_text('"""Grads."""\nfrom rhel_jax.model import x\n')
    status, err = run_main("--check", "--root", str(root))
    self.assertEqual(status, 1)
    self.assertIn("m_rhel_jax__gradients --> m_rhel_jax__model", err)

  def test_resolution_of_import_forms(self):
    root = write_tree(self.tmp(), {
        "pkg/__init__.py": "from pkg.sub import mod\n",
        "pkg/sub/__init__.py": "from . import mod\nfrom .. import other\n",
        "pkg/sub/mod.py": "import importlib\nimport pkg.sub\nimport numpy as np\n"
                          "def f():\n  return importlib.import_module('pkg.other')\n",
        "pkg/other.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from pkg.sub.mod import f\n"
                        "from pkg import name_in_init\n",
    })
    graph = architecture.build_graph(root)
    self.assertEqual(graph.edges(), {
        ("pkg", "pkg.sub.mod"): False,
        ("pkg.other", "pkg"): False,
        ("pkg.other", "pkg.sub.mod"): True,
        ("pkg.sub", "pkg.other"): False,
        ("pkg.sub", "pkg.sub.mod"): False,
        ("pkg.sub.mod", "pkg.other"): True,
        ("pkg.sub.mod", "pkg.sub"): False,
    })
    self.assertIn("pkg.sub --> pkg.sub.mod --> pkg.sub", architecture.module_level_cycles(graph))


if __name__ == "__main__":
  absltest.main()

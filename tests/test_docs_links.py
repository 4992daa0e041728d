"""Every relative link of the hand-written docs resolves: the file exists, and a ``#anchor`` names a
heading of it (GitHub's slugs). Results move and leave the tree; a stale link fails here."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "BUILD.md", *(ROOT / "docs").glob("*.md"),
               ROOT / "docs/results/README.md", ROOT / "docs/results/archive.md",
               *(ROOT / "studies").glob("*/NOTES.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
  seen: dict[str, int] = {}
  out = set()
  for line in FENCE.sub("", path.read_text()).splitlines():
    m = re.match(r"#{1,6} (.*)", line)
    if m:
      base = slug(m[1])
      n = seen.get(base, 0)
      seen[base] = n + 1
      out.add(base if n == 0 else f"{base}-{n}")
  return out


def test_slugs_follow_github():
  assert slug("Features (`config.data.*` = `HDConfig` fields, `data/heidelberg_digits.py`)") == \
      "features-configdata--hdconfig-fields-dataheidelberg_digitspy"
  assert slug("Table 1's Heidelberg Digits column: the dev corpus") == "table-1s-heidelberg-digits-column-the-dev-corpus"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
  broken = []
  for target in LINK.findall(FENCE.sub("", doc.read_text())):
    if re.match(r"[a-z]+:", target):
      continue  # http(s), mailto
    path, _, anchor = target.partition("#")
    file = (doc.parent / path).resolve() if path else doc
    if not file.exists():
      broken.append(f"{target}: no such file")
    elif anchor and file.suffix == ".md" and anchor not in anchors(file):
      broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
  assert not broken, "\n".join(broken)

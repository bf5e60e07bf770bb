"""The README is a front door of at most about 200 lines, and no relative link in it or in docs/ is dead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Documents other branches of this session write; a link to one is only checked once it exists.
#: (Empty this set once they are merged.)
WRITTEN_ELSEWHERE: set[str] = set()  # every linked doc is in this tree
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_relative_links_resolve(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s) and the like: not checked offline
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists() and path.name in WRITTEN_ELSEWHERE:
            continue
        assert path.exists(), f"{document.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{document.relative_to(ROOT)} links to #{anchor} in {path.name}"


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 210
    for activation in ("relu", "leaky_relu", "absolute", "squared_relu", "softplus"):
        assert f"`{activation}`" in text
    for document in ("concepts", "api", "architecture", "operations", "testing", "experiments"):
        assert f"(docs/{document}.md)" in text


def test_every_setting_is_in_the_configuration_table_and_no_other() -> None:
    """docs/operations.md's table lists each ``Settings`` field as its ``CNNRELAX_`` variable, and nothing else."""
    from cnnrelax.settings import Settings

    table = (ROOT / "docs" / "operations.md").read_text()
    listed = set(re.findall(r"^\| `(CNNRELAX_[A-Z0-9_]+)`", table, flags=re.M))
    listed |= set(re.findall(r"`(CNNRELAX_DASK_TLS_[A-Z_]+)`", table))  # one row names the three TLS files
    fields = {f"CNNRELAX_{name.upper()}" for name in Settings.model_fields}
    assert fields - listed == set(), "settings missing from docs/operations.md's table"
    assert listed - fields == set(), "docs/operations.md's table lists settings that do not exist"

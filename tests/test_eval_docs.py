"""The docs stand alone and agree: no reference to a method spec outside the repository, and the README and
docs/method.md list the same deviations from the paper (same number, same equations named)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def deviations(md: Path) -> list[str]:
    """The numbered items of the '## Deviations from the paper' section, one string each."""
    text = md.read_text()
    section = text[text.index("## Deviations from the paper") :]
    section = section[: section.find("\n## ", 5) if "\n## " in section[5:] else None]
    return re.findall(r"^\d+\. (.*(?:\n {3}.*)*)", section, flags=re.M)


def test_readme_and_method_list_the_same_deviations():
    readme, method = deviations(ROOT / "README.md"), deviations(ROOT / "docs" / "method.md")
    assert len(readme) == len(method) >= 6
    for a, b in zip(readme, method):  # the same equation (when one is named) in the same place
        assert re.findall(r"Eq\. \d+", a)[:1] == re.findall(r"Eq\. \d+", b)[:1], (a, b)


def test_no_spec_section_references():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    files += [*(ROOT / "src").rglob("*.yaml"), *(ROOT / "src").rglob("*.tsv")]
    hits = [f"{p.relative_to(ROOT)}" for p in files if "SPEC §" in p.read_text(errors="replace")]
    assert not hits, f"cite docs/method.md (or explain) instead of the spec: {hits}"

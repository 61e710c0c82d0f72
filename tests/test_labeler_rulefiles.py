"""The rule files are data: they load, validate with clear errors, and a custom rule set changes the labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medflip.errors import UserError
from medflip.labeler import label_report
from medflip.labeler.rules import compile_rules, rules_dir


def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(rules_dir(), target)
    return target


def test_packaged_rules_cover_every_observation() -> None:
    import yaml

    from medflip.observations import OBSERVATIONS

    data = yaml.safe_load((rules_dir() / "observations.yaml").read_text())
    assert set(OBSERVATIONS[1:]) <= set(data)  # No Finding is computed, not matched
    assert (rules_dir() / "mesh_mapping.tsv").exists()


def test_custom_rules_change_labels(tmp_path: Path) -> None:
    folder = copy_rules(tmp_path)
    yaml_path = folder / "observations.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace("mentions: [consolidat*]", "mentions: [consolidat*, hepatization]")
    )
    rules = compile_rules(folder)
    assert label_report("Right lower lobe hepatization.", rules=rules).values["Consolidation"] == 1
    assert label_report("Right lower lobe hepatization.").values["Consolidation"] is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (("observations.yaml", "Pneumothorax:", "Pneumothorax Large:"), "unknown observation"),
        (("observations.yaml", "mentions: [consolidat*]", "mentions: [Consolidation!]"), "bad phrase"),
        (("triggers.tsv", "no\tnegation_pre", "no\tnegation_sideways"), "kind"),
        (
            ("triggers.tsv", "without\tnegation_pre", "without\tnegation_pre\nwithout\tpseudo"),
            "conflicting roles",
        ),
    ],
)
def test_bad_rule_files_are_rejected(tmp_path: Path, edit: tuple[str, str, str], message: str) -> None:
    folder = copy_rules(tmp_path)
    name, old, new = edit
    path = folder / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(UserError, match=message):
        compile_rules(folder)

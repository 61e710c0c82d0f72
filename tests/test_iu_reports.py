"""The IU (OpenI) report reader: tgz or folder, id parity, sections, MeSH major terms."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from medflip.errors import UserError
from medflip.labeler.iu_reports import IUReport, load_iu_reports, parse_iu_xml

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">No acute disease.</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>Cardiomegaly/mild</major><major>Pulmonary Atelectasis/base/left</major><automatic>x</automatic></MeSH>
</eCitation>"""


def make_folder(root: Path) -> Path:
    folder = root / "ecgen-radiology"
    folder.mkdir(parents=True)
    for n in (1, 2, 10, 11):
        (folder / f"{n}.xml").write_text(XML.format(n=n, findings=f"Report   {n}.\n Mild cardiomegaly."))
    (folder / "readme.txt").write_text("ignored")
    return folder


def test_parse_fields() -> None:
    report = parse_iu_xml(XML.format(n=10, findings="Heart  normal.\n"))
    assert isinstance(report, IUReport)
    assert (report.id, report.uid, report.findings, report.impression) == (
        10,
        "CXR10",
        "Heart normal.",
        "No acute disease.",
    )
    assert report.mesh_major == ["Cardiomegaly/mild", "Pulmonary Atelectasis/base/left"]
    assert report.text == "Heart normal. No acute disease."
    empty = parse_iu_xml('<eCitation><uId id="CXR5"/></eCitation>')
    assert empty.text == "" and empty.mesh_major == []


def test_folder_and_tgz_with_parity(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    assert [r.id for r in load_iu_reports(folder)] == [1, 2, 10, 11]
    assert [r.id for r in load_iu_reports(folder, ids="even")] == [2, 10]
    assert [r.id for r in load_iu_reports(folder, ids="odd")] == [1, 11]
    tgz = tmp_path / "r.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(folder, arcname="ecgen-radiology")
    assert [r.uid for r in load_iu_reports(tgz, ids="even")] == ["CXR2", "CXR10"]


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="ids must be"):
        load_iu_reports(tmp_path, ids="prime")
    with pytest.raises(UserError, match="does not exist"):
        load_iu_reports(tmp_path / "nope.tgz")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "4.xml").write_text("<eCitation><unclosed>")
    with pytest.raises(UserError, match="4.xml"):
        load_iu_reports(folder)


def test_bundled_reports_even_ids() -> None:
    reports = load_iu_reports(ids="even")  # the tgz inside torchxrayvision; odd ids are never parsed here
    assert len(reports) > 1900 and all(r.id % 2 == 0 for r in reports)
    assert sum(1 for r in reports if r.mesh_major) == len(reports)

"""`medflip label` / `label-eval` / `label-bench` on tiny fixtures: CSV, JSONL, MIMIC folder, IU folder and tgz."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import pytest

from medflip.cli import main
from medflip.labeler.io import mimic_findings_impression, read_reports
from medflip.observations import OBSERVATIONS

IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">cough, r/o pneumonia</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>{mesh}</major></MeSH></eCitation>
"""


def write_iu(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "2.xml").write_text(
        IU_XML.format(n=2, findings="Mild cardiomegaly.", impression="No effusion.", mesh="Cardiomegaly/mild")
    )
    (folder / "4.xml").write_text(
        IU_XML.format(n=4, findings="Lungs are clear.", impression="Normal chest.", mesh="normal")
    )
    (folder / "3.xml").write_text(
        IU_XML.format(n=3, findings="Small left effusion.", impression="", mesh="Pleural Effusion/left")
    )
    return folder


def read_out(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_label_csv_output_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "reports.csv"
    with open(src, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "report_text"])
        writer.writerow(["a1", "Mild cardiomegaly. No pleural effusion."])
        writer.writerow(["a2", ""])
        writer.writerow(["a3", "Possible pneumonia."])
    out = tmp_path / "out.csv"
    assert (
        main(
            [
                "label",
                str(src),
                "--out",
                str(out),
                "--text-column",
                "report_text",
                "--id-column",
                "study",
                "--no-progress",
            ]
        )
        == 0
    )
    with open(out) as handle:
        header = next(csv.reader(handle))
    assert header == ["study", *OBSERVATIONS]
    rows = read_out(out)
    assert rows[0]["Cardiomegaly"] == "1" and rows[0]["Pleural Effusion"] == "0" and rows[0]["Edema"] == ""
    assert all(rows[1][o] == "" for o in OBSERVATIONS)  # a row without text stays, blank
    assert rows[2]["Pneumonia"] == "-1"
    assert "1 row(s) without text" in capsys.readouterr().err
    hedged = tmp_path / "hedged.csv"
    hedged.write_text("text\nOpacity may represent pneumonia. Evaluate for effusion.\n")
    for flags, pneumonia, effusion in (
        ([], "-1", ""),  # CheXpert convention (default): a hedge is uncertain, a question is no label
        (["--convention", "iu"], "", ""),  # IU convention: "may represent X" is an alternative, no label
        (["--hypothetical", "uncertain"], "-1", "-1"),
    ):
        assert main(["label", str(hedged), "--out", str(out), *flags, "--no-progress"]) == 0
        row = read_out(out)[0]
        assert (row["Pneumonia"], row["Pleural Effusion"]) == (pneumonia, effusion), flags


def test_label_jsonl_and_sentences(tmp_path: Path) -> None:
    src = tmp_path / "reports.jsonl"
    src.write_text(
        json.dumps({"id": 7, "text": "Mild cardiomegaly. No effusion."})
        + "\n\n"
        + json.dumps({"id": 8, "text": None})
        + "\n"
    )
    out = tmp_path / "out.csv"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 0
    rows = read_out(out)
    assert [r["id"] for r in rows] == ["7", "8"] and rows[0]["Cardiomegaly"] == "1"
    out_sentences = tmp_path / "sentences.csv"
    assert main(["label", str(src), "--out", str(out_sentences), "--sentences", "--no-progress"]) == 0
    rows = read_out(out_sentences)
    assert [(r["id"], r["sentence_index"], r["sentence"]) for r in rows] == [
        ("7", "0", "Mild cardiomegaly."),
        ("7", "1", "No effusion."),
    ]
    assert rows[1]["Pleural Effusion"] == "0" and rows[1]["Cardiomegaly"] == ""


def test_label_mimic_folder_uses_findings_and_impression(tmp_path: Path) -> None:
    report = tmp_path / "files" / "p10" / "p10000032" / "s50414267.txt"
    report.parent.mkdir(parents=True)
    report.write_bytes(
        b"                                 FINAL REPORT\n INDICATION: r/o pneumonia\n\n"
        b" FINDINGS: Mild cardiomegaly.\n No pleural effusion.\n\n IMPRESSION: No acute process. Caf\xe9 \xff\n"
    )  # non-UTF-8 bytes must not crash
    out = tmp_path / "out.csv"
    assert main(["label", str(tmp_path / "files"), "--out", str(out), "--no-progress"]) == 0
    (row,) = read_out(out)
    assert row["study_id"] == "s50414267" and row["Cardiomegaly"] == "1" and row["Pneumonia"] == ""


def test_mimic_sections() -> None:
    text = "INDICATION: fever\nFINDINGS: clear lungs\nIMPRESSION: normal\n"
    assert mimic_findings_impression(text) == "clear lungs\n\nnormal"
    assert mimic_findings_impression("no headers here") == "no headers here"


def test_label_iu_folder_and_tgz(tmp_path: Path) -> None:
    folder = write_iu(tmp_path / "ecgen-radiology")
    out = tmp_path / "out.csv"
    assert main(["label", str(folder), "--out", str(out), "--no-progress"]) == 0
    rows = read_out(out)
    assert [r["uid"] for r in rows] == ["CXR2", "CXR3", "CXR4"]
    assert rows[0]["Cardiomegaly"] == "1" and rows[0]["Pneumonia"] == ""  # the indication is not labelled
    tgz = tmp_path / "reports.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(folder, arcname="ecgen-radiology")
    assert read_reports(tgz).ids == ["CXR2", "CXR3", "CXR4"]


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "out.csv")
    assert main(["label", str(tmp_path / "missing.csv"), "--out", out]) == 2
    assert "missing.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    assert main(["label", str(bad), "--out", out]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    two = tmp_path / "two.csv"
    two.write_text("a,b\n1,2\n")
    assert main(["label", str(two), "--out", out]) == 2
    assert "--text-column" in capsys.readouterr().err
    assert main(["label", str(two), "--out", out, "--text-column", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"not a tar file")
    assert main(["label", str(broken), "--out", out]) == 2
    assert "broken.tgz" in capsys.readouterr().err
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert main(["label", str(empty_dir), "--out", out]) == 2
    assert "empty" in capsys.readouterr().err


def test_label_eval_on_tiny_iu_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_iu(tmp_path / "iu")
    report = tmp_path / "scores.json"
    assert main(["label-eval", "--path", str(folder), "--errors", "2", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "2 scored" in text and "macro-F1" in text  # even ids only: CXR2 and CXR4
    scores = json.loads(report.read_text())
    assert scores["uncertain_positive"]["per_observation"]["Cardiomegaly"]["f1"] == 1.0
    assert scores["uncertain_negative"]["per_observation"]["No Finding"]["f1"] == 1.0


def test_label_bench_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import medflip.labeler.bench as bench

    monkeypatch.setattr(bench, "_texts", lambda: ["Mild cardiomegaly. No effusion."] * 50)
    assert main(["label-bench", "--reports", "200"]) == 0
    assert "reports/s" in capsys.readouterr().out


def test_worst_case_scan_lists_the_slowest_phrases() -> None:
    from medflip.labeler.bench import format_worst_case, worst_case

    rows = worst_case(size=300, top=4, separators=(", ",))
    assert len(rows) == 4
    slowest = [max(r["detail_ms"], r["fast_ms"]) for r in rows]
    assert slowest == sorted(slowest, reverse=True)
    assert "slowest 4" in format_worst_case(rows, 300)

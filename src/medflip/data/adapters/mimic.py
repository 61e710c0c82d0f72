"""MIMIC-CXR-JPG 2.0.0 (+ the MIMIC-CXR free-text reports).

Layout (PhysioNet, unchanged): ``ROOT/files/pNN/pXXXXXXXX/sYYYYYYYY/<dicom_id>.jpg`` and
``ROOT/mimic-cxr-2.0.0-{metadata,split,chexpert}.csv[.gz]``. Reports (``sYYYYYYYY.txt`` from
mimic-cxr-reports.zip) are looked up at ``REPORTS/files/pNN/pXXXXXXXX/sYYYYYYYY.txt`` or
``REPORTS/pNN/pXXXXXXXX/sYYYYYYYY.txt``, with REPORTS = ``--reports`` or ROOT; REPORTS may also be the
distributed ``mimic-cxr-reports.zip`` (read in place; found automatically in ROOT).

- Labels: the study's row in -chexpert.csv (the official CheXpert-labeler output); studies missing from
  it are labeled from their report by medflip's labeler (docs/labeler.md).
- Report text: the FINDINGS and IMPRESSION sections (also kept in the ``findings`` / ``impression``
  columns); a report with neither falls back to its last paragraph (as the MIMIC-CXR section parser
  does). A study whose report is missing or empty is a bad row; when no report is found at all (the user
  has only MIMIC-CXR-JPG), ``report`` stays blank for every row and a note is printed.
- Split from -split.csv ("validate" -> "val"); view = ViewPosition (from -metadata.csv); patient =
  subject_id. ``--frontal-only`` keeps PA and AP views (applied by ``medflip data import``, which counts
  what it drops).
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import (
    ImportContext,
    find_file,
    norm_view,
    parse_label,
    read_csv_checked,
    report_labels,
)
from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

PREFIX = "mimic-cxr-2.0.0-"
_HEADER = re.compile(r"^\s*([A-Z][A-Z &/()-]{2,}):", re.M)
_REPORT_NAME = re.compile(r"(?:^|/)s(\d+)\.txt$")
SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def extract_sections(text: str) -> tuple[str, str]:
    """(findings, impression) of a MIMIC-CXR report, whitespace-normalised."""
    heads = list(_HEADER.finditer(text))
    sections: dict[str, str] = {}
    for k, m in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        sections.setdefault(m.group(1).strip(), " ".join(text[m.end() : end].split()))
    findings = sections.get("FINDINGS", "") or sections.get("FINDINGS AND IMPRESSION", "")
    impression = sections.get("IMPRESSION", "") or sections.get("CONCLUSION", "")
    if not findings and not impression:
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
        paragraphs = [p for p in paragraphs if p.upper() != "FINAL REPORT"]
        impression = paragraphs[-1] if paragraphs else ""
        if _HEADER.match(impression):  # the last paragraph is a header-only section (e.g. COMPARISON: ...)
            impression = ""
    return findings, impression


class ReportSource:
    """sNNNNNNNN.txt reports from an extracted folder or the distributed ``mimic-cxr-reports.zip``."""

    def __init__(self, base: Path) -> None:
        self.base, self.zip, self.index = base, None, {}
        self.available = base.is_dir() and (
            any((base / "files").glob("p*/p*/s*.txt")) or any(base.glob("p*/p*/s*.txt"))
        )
        if not self.available and base.is_dir() and (base / "mimic-cxr-reports.zip").is_file():
            base = self.base = base / "mimic-cxr-reports.zip"
        if base.is_file() and base.suffix == ".zip":
            try:
                self.zip = zipfile.ZipFile(base)
            except (zipfile.BadZipFile, OSError) as e:
                raise UserError(f"cannot read MIMIC-CXR reports archive {base}: {e}") from e
            for name in self.zip.namelist():
                m = _REPORT_NAME.search(name)
                if m:
                    self.index[m.group(1)] = name
            self.available = bool(self.index)

    def read(self, subject: str, study: str) -> str | None:
        if self.zip is not None:
            name = self.index.get(study)
            return self.zip.read(name).decode("utf-8", errors="replace") if name else None
        for cand in (
            self.base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt",
            self.base / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt",
        ):
            if cand.is_file():
                return cand.read_text(errors="replace")
        return None


def run(ctx: ImportContext) -> pd.DataFrame:
    root = ctx.root
    meta_p = find_file(root, [PREFIX + "metadata.csv"], "MIMIC-CXR-JPG metadata")
    split_p = find_file(root, [PREFIX + "split.csv"], "MIMIC-CXR-JPG split file")
    meta = read_csv_checked(meta_p, ["dicom_id", "subject_id", "study_id", "ViewPosition"], "metadata CSV")
    splits = read_csv_checked(split_p, ["dicom_id", "split"], "split CSV")
    split_of = dict(zip(splits["dicom_id"], splits["split"]))
    labels_of: dict[str, dict[str, int | None]] = {}
    try:
        chex_p = find_file(root, [PREFIX + "chexpert.csv"], "MIMIC-CXR-JPG CheXpert labels")
    except UserError:
        chex_p = None
    if chex_p is not None:
        chex = read_csv_checked(chex_p, ["subject_id", "study_id", *OBSERVATIONS], "CheXpert label CSV")
        for i, rec in enumerate(chex.to_dict("records")):
            labels_of[rec["study_id"]] = {
                o: parse_label(rec[o], chex_p, i, o, ctx.rejects) for o in OBSERVATIONS
            }
    reports_base = Path(ctx.opt("reports", root))
    reports = ReportSource(reports_base)
    have_reports = reports.available
    if not have_reports:
        print(
            f"note: no MIMIC-CXR reports (sNNNNNNNN.txt) under {reports_base}; importing images without text",
            file=sys.stderr,
        )
    texts: dict[str, tuple[str, str] | None] = {}
    rows = []
    for i, rec in enumerate(meta.to_dict("records")):
        subject, study, dicom = rec["subject_id"].strip(), rec["study_id"].strip(), rec["dicom_id"].strip()
        path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        if not path.is_file():
            ctx.rejects.bad(meta_p, i, f"image not found: {path}")
            continue
        split = SPLIT_NAMES.get(split_of.get(dicom, "").strip())
        if split is None:
            ctx.rejects.bad(meta_p, i, f"dicom_id {dicom} has no valid split in {split_p.name}")
            continue
        findings = impression = ""
        if have_reports:
            if study not in texts:
                raw = reports.read(subject, study)
                texts[study] = extract_sections(raw) if raw is not None else None
            sec = texts[study]
            if sec is None or not (sec[0] or sec[1]):
                why = "report missing" if sec is None else "report has no findings or impression"
                ctx.rejects.bad(meta_p, i, f"study s{study}: {why}")
                continue
            findings, impression = sec
        rows.append(
            {
                "path": str(path),
                "source": "mimic-cxr",
                "patient_id": subject,
                "study_id": study,
                "view": norm_view(rec["ViewPosition"]),
                "split": split,
                "class": "",
                "report": " ".join(p for p in (findings, impression) if p),
                "findings": findings,
                "impression": impression,
                "_study": study,
            }
        )
    if not rows:
        raise UserError(f"no MIMIC-CXR-JPG images found under {root / 'files'}")
    out = pd.DataFrame(rows)
    unlabeled = [k for k, s in enumerate(out["_study"]) if s not in labels_of]
    if unlabeled and not have_reports:
        raise UserError(
            f"{len(unlabeled)} images have no row in -chexpert.csv and no report to label them from"
        )
    from_reports = report_labels([out["report"].iloc[k] for k in unlabeled]) if unlabeled else []
    label_rows = [labels_of.get(s) for s in out["_study"]]
    for k, lab in zip(unlabeled, from_reports):
        label_rows[k] = lab
    out = pd.concat(
        [out.drop(columns="_study"), pd.DataFrame(label_rows, columns=list(OBSERVATIONS))], axis=1
    )
    return out

"""Read report collections for `medflip label` and write the CheXpert-format CSV.

Inputs: a CSV or JSONL file (text and id columns), a folder of MIMIC-CXR report .txt files
(`files/pNN/pXXXXXXXX/sYYYYYYYY.txt`), or the IU reports (a .tgz or a folder of N.xml). Every failure to read
names the file; undecodable bytes are replaced, never fatal.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medflip.errors import UserError
from medflip.labeler.iu_reports import is_iu_source, load_iu_reports
from medflip.observations import OBSERVATIONS

TEXT_COLUMN_GUESSES = ("text", "report", "reports", "report_text", "Reports", "Report", "Text", "impression")
ID_COLUMN_GUESSES = ("id", "study_id", "report_id", "uid", "dicom_id", "ID", "Id")
_SECTION = re.compile(r"^[ \t]*([A-Z][A-Z /&-]{2,40}):", re.MULTILINE)
LABELLED_SECTIONS = ("FINDINGS", "IMPRESSION")


@dataclass
class ReportSource:
    """Texts to label with their ids; `id_column` names the output's id column."""

    id_column: str
    ids: list[str]
    texts: list[str | None]
    kind: str

    @property
    def missing_text(self) -> int:
        return sum(1 for t in self.texts if t is None or not str(t).strip())


def decode_bytes(data: bytes) -> str:
    """UTF-8 (with or without BOM); anything else is decoded with replacement characters, never an error."""
    return data.decode("utf-8-sig", errors="replace")


def mimic_findings_impression(text: str) -> str:
    """FINDINGS + IMPRESSION sections of a MIMIC-CXR report (the whole text when it has neither).

    Labelling the indication ("r/o pneumonia") or the technique would invent findings.
    """
    headers = list(_SECTION.finditer(text))
    parts = []
    for i, match in enumerate(headers):
        if match.group(1).strip() in LABELLED_SECTIONS:
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            parts.append(text[match.end() : end].strip())
    return "\n\n".join(p for p in parts if p) if parts else text


def _pick(
    columns: Sequence[str], wanted: str | None, guesses: Sequence[str], what: str, path: Path
) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{path}: no {what} column {wanted!r}; columns are {list(columns)}")
        return wanted
    for guess in guesses:
        if guess in columns:
            return guess
    return None


def _from_table(
    rows: list[dict],
    columns: Sequence[str],
    path: Path,
    text_column: str | None,
    id_column: str | None,
    kind: str,
) -> ReportSource:
    text_col = _pick(columns, text_column, TEXT_COLUMN_GUESSES, "text", path)
    if text_col is None:
        if len(columns) == 1:
            text_col = columns[0]
        else:
            raise UserError(
                f"{path}: cannot tell which column holds the report text; pass --text-column (columns: {list(columns)})"
            )
    id_col = _pick(columns, id_column, ID_COLUMN_GUESSES, "id", path)
    ids = [str(row.get(id_col, "")) if id_col else str(i) for i, row in enumerate(rows)]
    texts = []
    for row in rows:
        value = row.get(text_col)
        texts.append(None if value is None or (isinstance(value, float) and value != value) else str(value))
    return ReportSource(id_col or "row", ids, texts, kind)


def read_csv(path: Path, text_column: str | None = None, id_column: str | None = None) -> ReportSource:
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, csv.Error) as e:
        raise UserError(f"cannot read CSV {path}: {e}") from e
    if not columns:
        raise UserError(f"{path}: empty CSV (no header row)")
    return _from_table(rows, columns, path, text_column, id_column, "csv")


def read_jsonl(path: Path, text_column: str | None = None, id_column: str | None = None) -> ReportSource:
    rows: list[dict] = []
    columns: dict[str, None] = {}
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{lineno}: each line must be a JSON object")
                rows.append(row)
                columns.update(dict.fromkeys(row))
    except OSError as e:
        raise UserError(f"cannot read JSONL {path}: {e}") from e
    if not rows:
        raise UserError(f"{path}: no JSON objects found")
    return _from_table(rows, list(columns), path, text_column, id_column, "jsonl")


def read_mimic_folder(path: Path, sections: str = "findings+impression") -> ReportSource:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise UserError(f"{path}: no report .txt files found (expected files/pNN/pXXXXXXXX/sYYYYYYYY.txt)")
    ids, texts = [], []
    for file in files:
        try:
            text = decode_bytes(file.read_bytes())
        except OSError as e:
            raise UserError(f"cannot read report {file}: {e}") from e
        ids.append(file.stem)
        texts.append(mimic_findings_impression(text) if sections == "findings+impression" else text)
    return ReportSource("study_id", ids, texts, "mimic")


def read_iu(path: Path) -> ReportSource:
    reports = load_iu_reports(path)
    if not reports:
        raise UserError(f"{path}: no IU report XML files found")
    return ReportSource("uid", [r.uid for r in reports], [r.text for r in reports], "iu")


def read_reports(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    id_column: str | None = None,
    sections: str = "findings+impression",
) -> ReportSource:
    """Dispatch on what `path` is (see the module docstring)."""
    source = Path(path)
    if not source.exists():
        raise UserError(f"input not found: {source}")
    name = source.name.lower()
    if source.is_file() and name.endswith((".jsonl", ".ndjson")):
        return read_jsonl(source, text_column, id_column)
    if source.is_file() and name.endswith(".csv"):
        return read_csv(source, text_column, id_column)
    if is_iu_source(source):
        return read_iu(source)
    if source.is_dir():
        return read_mimic_folder(source, sections)
    if source.is_file() and name.endswith(".txt"):  # one report
        try:
            return ReportSource("study_id", [source.stem], [decode_bytes(source.read_bytes())], "txt")
        except OSError as e:
            raise UserError(f"cannot read report {source}: {e}") from e
    raise UserError(
        f"{source}: unsupported input (expected .csv, .jsonl, a MIMIC folder, an IU .tgz or XML folder)"
    )


def _cell(value: int | None) -> str:
    return "" if value is None else str(value)


def write_labels_csv(
    path: str | os.PathLike[str], id_column: str, ids: Sequence[str], values: Iterable[Sequence[int | None]]
) -> None:
    """CheXpert labeler format: id column, then one column per observation (the names of medflip.observations.OBSERVATIONS): 1 / 0 / -1 / blank."""
    try:
        with open(path, "w", encoding="utf-8", errors="replace", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([id_column, *OBSERVATIONS])
            for report_id, row in zip(ids, values):
                writer.writerow([report_id, *(_cell(v) for v in row)])
    except OSError as e:
        raise UserError(f"cannot write {path}: {e}") from e


def write_sentences_csv(
    path: str | os.PathLike[str], id_column: str, rows: Iterable[tuple[str, int, str, Sequence[int | None]]]
) -> None:
    """One row per sentence: id, sentence index, sentence text, the 14 observation columns."""
    try:
        with open(path, "w", encoding="utf-8", errors="replace", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([id_column, "sentence_index", "sentence", *OBSERVATIONS])
            for report_id, index, sentence, row in rows:
                writer.writerow([report_id, index, sentence, *(_cell(v) for v in row)])
    except OSError as e:
        raise UserError(f"cannot write {path}: {e}") from e

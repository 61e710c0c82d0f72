"""Report-text corpora named by a string: the bundled IU reports or a CSV / JSONL file with a report column.

Used by pre-training (`--data.texts`) and by retrieval (`medflip eval retrieval --texts`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medflip.errors import UserError
from medflip.labeler.iu_reports import load_iu_reports


def load_text_reports(source: str, text_column: str) -> list[str]:
    """Report texts of a corpus: "iu" or a CSV / JSONL file with `text_column`."""
    if source == "iu":
        return [r.text for r in load_iu_reports() if r.text]

    path = Path(source)
    if not path.is_file():
        raise UserError(f"data.texts: {source!r} is neither 'paired', 'iu' nor an existing CSV/JSONL file")
    try:
        df = (
            pd.read_json(path, lines=True)
            if path.suffix in (".jsonl", ".json")
            else pd.read_csv(path, dtype=str)
        )
    except ValueError as e:
        raise UserError(f"cannot read text corpus {path}: {e}") from e
    if text_column not in df.columns:
        raise UserError(f"{path} has no column {text_column!r} (columns: {', '.join(map(str, df.columns))})")
    texts = df[text_column].fillna("").astype(str).str.strip()
    empty = int((texts == "").sum())
    if empty:
        print(f"text corpus {path}: skipped {empty} of {len(texts)} rows without text")
    kept = texts[texts != ""].tolist()
    if not kept:
        raise UserError(f"text corpus {path} has no non-empty {text_column!r} values")
    return kept

"""The manifest: one table format for every dataset medflip reads.

Every adapter (`medflip data import`) writes one, the cache builder and the trainer read one. One row per
image. Columns (see docs/data.md):

- ``path``: image file (absolute, or relative to the manifest file's folder).
- ``source``: dataset name (the adapter that produced the row).
- ``patient_id``, ``study_id``: grouping keys; splits are patient-disjoint on ``patient_id``.
- ``view``: "PA", "AP", "LATERAL", "LL", ... or "" when unknown.
- ``split``: "train", "val", "test", or "" (not assigned yet: run `medflip data split`).
- ``class``: the dataset's own class name (zero-shot tasks use it), "" when the dataset has none.
- ``report``: report text (findings + impression), "" for image-only datasets.
- the 14 CheXpert observations, named exactly as in `medflip.observations.OBSERVATIONS`, with values
  1 / 0 / -1 / blank (blank = not mentioned).

Extra columns (e.g. ``findings``, ``impression``, ``subtype``) are kept as they are. String columns are
read as strings with "" for missing, so "NA" in a report stays the text "NA" instead of turning into NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from medflip.errors import UserError
from medflip.observations import OBSERVATIONS

ID_COLUMNS: tuple[str, ...] = ("path", "source", "patient_id", "study_id", "view", "split", "class", "report")
MANIFEST_COLUMNS: tuple[str, ...] = ID_COLUMNS + OBSERVATIONS
SPLITS: tuple[str, ...] = ("train", "val", "test")
LABEL_VALUES = (1, 0, -1)
LABEL_DTYPE = "Int8"


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Add missing manifest columns, normalise dtypes, put the manifest columns first (extras after).

    Adapters build frames loosely (dicts of lists); this is the one place that makes them canonical, so
    that every manifest written has the same columns in the same order.
    """
    out = df.copy()
    for col in ID_COLUMNS:
        if col not in out.columns:
            out[col] = ""
        out[col] = out[col].astype(object).where(out[col].notna(), "").astype(str)
    for obs in OBSERVATIONS:
        if obs not in out.columns:
            out[obs] = pd.NA
        out[obs] = _to_label_column(out[obs], obs)
    extras = [c for c in out.columns if c not in MANIFEST_COLUMNS]
    for col in extras:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype(object).where(out[col].notna(), "").astype(str)
    return out[list(MANIFEST_COLUMNS) + extras].reset_index(drop=True)


_FAST_LABELS: dict[object, float] = {
    "1": 1.0,
    "1.0": 1.0,
    "0": 0.0,
    "0.0": 0.0,
    "-1": -1.0,
    "-1.0": -1.0,
    "": np.nan,
}


def _to_label_column(col: pd.Series, name: str) -> pd.Series:
    """Values "1"/"1.0"/1/0/-1/""/NaN -> nullable Int8; anything else -> UserError naming the column.

    The common CSV spellings go through one vectorised dict lookup (a MIMIC-sized manifest has 5 M label
    cells); only the rest (numbers, padded strings) take the slow per-value path.
    """
    if str(col.dtype) == LABEL_DTYPE:
        return col
    s = col.astype(object).where(col.notna(), None)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.astype(np.float64)
        return _checked(num, s, name)
    known = s.isin(list(_FAST_LABELS))
    num = pd.Series(np.nan, index=s.index, dtype=np.float64)
    num[known] = s[known].map(_FAST_LABELS).astype(np.float64)
    rest = ~known & s.notna()
    if rest.any():
        r = s[rest].map(lambda v: None if isinstance(v, str) and v.strip() == "" else v)
        num[rest] = pd.to_numeric(r, errors="coerce")
        bad = num.isna() & rest & r.reindex(s.index).notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"label column {name!r}: value {s.iloc[i]!r} in row {i} is not 1, 0, -1 or blank")
    return _checked(num, s, name)


def _checked(num: pd.Series, s: pd.Series, name: str) -> pd.Series:
    out_of_range = num.notna() & ~num.isin(LABEL_VALUES)
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range.to_numpy())[0])
        raise UserError(f"label column {name!r}: value {s.iloc[i]!r} in row {i} is not 1, 0, -1 or blank")
    return num.astype("Float64").astype(LABEL_DTYPE)


def validate_manifest(df: pd.DataFrame, source: str = "manifest") -> None:
    """Raise UserError listing every problem (missing columns, bad label values, bad splits, empty paths)."""
    problems: list[str] = []
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if "path" in df.columns:
        empty = np.flatnonzero(df["path"].astype(str).str.strip().eq("").to_numpy())
        if len(empty):
            problems.append(f"empty path in rows {_rows(empty)}")
    if "split" in df.columns:
        bad = ~df["split"].astype(str).isin(SPLITS + ("",))
        if bad.any():
            values = sorted(set(df.loc[bad, "split"].astype(str)))[:5]
            problems.append(
                f"split must be one of {SPLITS} or blank, got {values} in rows {_rows(np.flatnonzero(bad))}"
            )
    for obs in OBSERVATIONS:
        if obs not in df.columns:
            continue
        if str(df[obs].dtype) == LABEL_DTYPE:  # already parsed (conform): only the range to check
            bad = df[obs].notna() & ~df[obs].isin(LABEL_VALUES)
        else:
            num = pd.to_numeric(df[obs].astype(object).where(df[obs].notna(), None), errors="coerce")
            bad = (num.notna() & ~num.isin(LABEL_VALUES)) | (
                num.isna() & df[obs].notna() & (df[obs].astype(str) != "")
            )
        if bad.any():
            problems.append(
                f"column {obs!r}: values must be 1, 0, -1 or blank (rows {_rows(np.flatnonzero(bad))})"
            )
    if problems:
        raise UserError(f"{source} is not a valid manifest: " + "; ".join(problems))


def _rows(idx: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (f" (+{len(idx) - limit} more)" if len(idx) > limit else "")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise UserError(f"{path}: Parquet needs pyarrow (pip install pyarrow), or use a .csv manifest") from e


def read_manifest(path: str | os.PathLike[str], resolve_paths: bool = True) -> pd.DataFrame:
    """Read a CSV (or Parquet) manifest, validate it, and make relative image paths absolute.

    Relative paths are resolved against the manifest's folder, so a dataset folder with its manifest
    inside can be moved as a whole.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"manifest not found: {p}")
    try:
        if _is_parquet(p):
            _require_pyarrow(p)
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read manifest {p}: {e}") from e
    if any(c not in df.columns for c in MANIFEST_COLUMNS):
        validate_manifest(df, str(p))  # lists every problem, missing columns first
    try:
        df = conform(df)
    except UserError as e:
        raise UserError(f"{p}: {e}") from e
    validate_manifest(df, str(p))
    if resolve_paths:
        base = p.resolve().parent
        rel = ~df["path"].map(os.path.isabs).to_numpy(dtype=bool)
        if rel.any():
            df.loc[rel, "path"] = [str(base / s) for s in df.loc[rel, "path"]]
    return df


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write atomically (tmp file + rename), CSV or Parquet by the file suffix.

    Atomic so an interrupted import never leaves a half-written manifest that looks complete.
    """
    p = Path(path)
    df = conform(df)
    validate_manifest(df, str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    if _is_parquet(p):
        _require_pyarrow(p)
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, p)
    return p


def label_values(df: pd.DataFrame) -> np.ndarray:
    """The 14 label columns as float [N, 14] with NaN for blank (fast, vectorised)."""
    return (
        np.stack(
            [df[obs].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan) for obs in OBSERVATIONS],
            axis=1,
        )
        if len(df)
        else np.zeros((0, len(OBSERVATIONS)))
    )

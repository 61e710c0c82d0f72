"""Shared adapter plumbing: options, bad-row handling (raise or reject), checked CSV reading, labeling.

Bad-row rule (issue 4): a bad row raises a UserError naming the file and the row; with --skip-bad it is
recorded (file, row, reason) and written to the rejects file by the CLI, and the count is printed. Nothing
is ever dropped silently.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medflip.errors import UserError
from medflip.labeler import label_report
from medflip.observations import OBSERVATIONS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")
UNCERTAIN_AT_IMPORT = ("keep", "positive", "negative", "ignore")


@dataclass
class Rejects:
    """Collects bad rows when skipping, raises on the first one otherwise."""

    skip_bad: bool = False
    rows: list[dict[str, str]] = field(default_factory=list)

    def bad(self, file: str | os.PathLike[str], row: int | str, reason: str) -> None:
        """row: 0-based data row of a CSV (reported with its 1-based line number, header = line 1), or a
        name (file name, image id) for sources that are not tables."""
        where = f"row {row} (line {row + 2})" if isinstance(row, int) else f"row {row}"
        if not self.skip_bad:
            raise UserError(
                f"{file}, {where}: {reason} (pass --skip-bad to write such rows to a rejects file)"
            )
        line = str(row + 2) if isinstance(row, int) else ""
        self.rows.append({"file": str(file), "row": str(row), "line": line, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["file", "row", "line", "reason"])


@dataclass
class ImportContext:
    """What every adapter receives: the dataset root, the rejects collector and the CLI options."""

    root: Path
    rejects: Rejects = field(default_factory=Rejects)
    options: dict[str, Any] = field(default_factory=dict)

    def opt(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """First of `names` (each also tried with .gz) under root; UserError listing what was looked for."""
    for name in names:
        for cand in (root / name, root / f"{name}.gz"):
            if cand.is_file():
                return cand
    raise UserError(f"{what} not found in {root}: expected one of {', '.join(names)}")


def read_csv_checked(path: Path, required: Iterable[str], what: str = "CSV") -> pd.DataFrame:
    """Read a CSV as strings ("" for blanks) and check its header names the required columns."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError as e:
        raise UserError(f"{what} not found: {path}") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from e
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; found {list(df.columns)[:20]}")
    return df


def parse_label(value: str, file: Path, row: int, column: str, rejects: Rejects) -> int | None:
    """'1', '1.0', '0', '-1', '' -> 1 / 0 / -1 / None; anything else is a bad row."""
    v = value.strip()
    if v == "":
        return None
    try:
        f = float(v)
    except ValueError:
        f = float("nan")
    if f in (1.0, 0.0, -1.0):
        return int(f)
    rejects.bad(file, row, f"column {column!r}: label {value!r} is not 1, 0, -1 or blank")
    return None


def apply_uncertain(value: int | None, policy: str) -> int | None:
    """Import-time -1 policy: keep (default: the trainer decides later), positive, negative, ignore."""
    if value != -1 or policy == "keep":
        return value
    return {"positive": 1, "negative": 0, "ignore": None}[policy]


def blank_labels() -> dict[str, int | None]:
    return dict.fromkeys(OBSERVATIONS)


def normal_labels() -> dict[str, int | None]:
    """A film read as normal: No Finding = 1 and every other observation 0 (CheXpert's definition of No
    Finding is 'none of the others positive or uncertain')."""
    out: dict[str, int | None] = dict.fromkeys(OBSERVATIONS, 0)
    out["No Finding"] = 1
    return out


def report_labels(texts: Sequence[str]) -> list[dict[str, int | None]]:
    """Label report texts with the rule-based labeler (docs/labeler.md); identical texts are labeled once."""
    memo: dict[str, dict[str, int | None]] = {}
    out = []
    for t in texts:
        if t not in memo:
            values = label_report(t).values
            memo[t] = {obs: (None if values.get(obs) is None else int(values[obs])) for obs in OBSERVATIONS}
        out.append(memo[t])
    return out


def images_by_stem(root: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Map file stem -> path for every image under root (datasets that name images by id only)."""
    found: dict[str, Path] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in suffixes:
                found.setdefault(stem, Path(dirpath) / name)
    return found


def list_images(folder: Path) -> list[Path]:
    """Image files under folder (recursive), sorted so every import produces the same row order."""
    out = [
        Path(d) / f for d, _s, files in os.walk(folder) for f in files if f.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(out)


def xrv_data_file(name: str) -> Path | None:
    """A metadata file bundled in torchxrayvision's data/ folder, found WITHOUT importing torchxrayvision
    (its import pulls in torch and takes seconds)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "data" / name
    return path if path.is_file() else None


def norm_view(value: str) -> str:
    """Vendor view strings -> PA / AP / LATERAL / LL / RL / ... ('' when unknown)."""
    v = re.sub(r"\s+", " ", str(value or "")).strip().upper()
    return {"L": "LATERAL", "LAT": "LATERAL", "NAN": "", "UNKNOWN": ""}.get(v, v)


FRONTAL_VIEWS = ("PA", "AP", "AP AXIAL", "PA LLD", "AP LLD", "AP RLD", "PA RLD", "FRONTAL", "")


def screen_rows(df: pd.DataFrame, ctx: ImportContext, source: str) -> pd.DataFrame:
    """Rows every adapter's output must pass before it becomes a manifest (one place, all adapters):

    * the image path resolves (symlinks followed) inside --root, unless --allow-outside-root: a CSV row
      `../../etc/passwd`, an absolute path elsewhere or a symlink leading out is a bad row;
    * each image once: a repeated path is a bad row (it would be trained on twice, and split by
      patient would not keep its copies together if their patient ids differ).

    Bad rows raise or are counted in the rejects file (--skip-bad), like every other bad row.
    """
    if df.empty or "path" not in df.columns:
        return df
    root = os.path.realpath(ctx.root)
    allow_outside = bool(ctx.opt("allow_outside_root", False))
    keep, first_row = [], {}
    for i, raw in enumerate(df["path"].astype(str)):
        path = os.path.realpath(raw if os.path.isabs(raw) else os.path.join(ctx.root, raw))
        if not allow_outside and os.path.commonpath([root, path]) != root:
            ctx.rejects.bad(
                source,
                raw,
                f"path {raw!r} resolves to {path}, outside --root {root} "
                "(pass --allow-outside-root if that is intended)",
            )
            continue
        if path in first_row:
            ctx.rejects.bad(source, raw, f"the same image as row {first_row[path]} (listed twice)")
            continue
        first_row[path] = i
        keep.append(i)
    return df.iloc[keep].reset_index(drop=True)

"""Reader of the Indiana University (OpenI / NLM) chest X-ray reports.

The 3,955 report XMLs (``ecgen-radiology/N.xml``) ship inside the torchxrayvision wheel as
``torchxrayvision/data/NLMCXR_reports.tgz``, so the labeler can be evaluated without any download.
This module reads either that tgz (or any tgz with the same layout) or an extracted folder.

Id parity matters: the labeler is developed and tuned on EVEN ids only; ODD ids are reserved for the
acceptance run, so ``ids="odd"`` exists but must never be used for tuning.
"""

from __future__ import annotations

import os
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medflip.errors import UserError

ID_SELECTIONS = ("all", "even", "odd")
_XML_NAME = re.compile(r"(?:^|/)(\d+)\.xml$")


@dataclass(frozen=True)
class IUReport:
    """One IU report: sections as written, plus the NLM MeSH major terms (the reference coding)."""

    id: int
    uid: str
    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    mesh_major: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Findings + impression: the input the labeler is evaluated on."""
        return " ".join(part for part in (self.findings, self.impression) if part).strip()


def default_iu_path() -> Path:
    """The reports tgz bundled with torchxrayvision (never downloaded)."""
    try:
        import torchxrayvision  # here: its import pulls in torch (seconds); the labeler never needs it
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise UserError("torchxrayvision is not installed; pass the IU reports path explicitly") from e
    path = Path(torchxrayvision.__file__).parent / "data" / "NLMCXR_reports.tgz"
    if not path.exists():
        raise UserError(f"IU reports not found at {path}; pass the IU reports path explicitly")
    return path


def _keep(report_id: int, ids: str) -> bool:
    if ids == "all":
        return True
    return (report_id % 2 == 0) == (ids == "even")


def parse_iu_xml(data: bytes | str, fallback_id: int | None = None, source: str = "<xml>") -> IUReport:
    """Parse one report XML. Missing sections become empty strings; a missing uId uses `fallback_id`."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise UserError(f"cannot parse IU report XML {source}: {e}") from e
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").upper()
        sections[label] = " ".join((node.text or "").split())
    uid_node = root.find("uId")
    uid = uid_node.get("id", "") if uid_node is not None else ""
    match = re.search(r"(\d+)", uid)
    if match:
        report_id = int(match.group(1))
    elif fallback_id is not None:
        report_id = fallback_id
        uid = f"CXR{fallback_id}"
    else:
        raise UserError(f"IU report {source} has no <uId> and no numeric file name")
    mesh_major = [" ".join((m.text or "").split()) for m in root.findall("./MeSH/major")]
    return IUReport(
        id=report_id,
        uid=uid or f"CXR{report_id}",
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        indication=sections.get("INDICATION", ""),
        comparison=sections.get("COMPARISON", ""),
        mesh_major=[m for m in mesh_major if m],
    )


def _iter_tgz(path: Path, ids: str) -> Iterator[IUReport]:
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"cannot read IU reports archive {path}: {e}") from e
    with archive:
        for member in archive:
            match = _XML_NAME.search(member.name)
            if not member.isfile() or not match:
                continue
            file_id = int(match.group(1))
            if not _keep(file_id, ids):  # filter before parsing: odd reports are never even read
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            yield parse_iu_xml(handle.read(), file_id, f"{path}:{member.name}")


def _iter_folder(path: Path, ids: str) -> Iterator[IUReport]:
    for root, _dirs, files in os.walk(path):
        for name in files:
            match = _XML_NAME.search(name)
            if not match or not _keep(int(match.group(1)), ids):
                continue
            file_path = Path(root) / name
            try:
                data = file_path.read_bytes()
            except OSError as e:
                raise UserError(f"cannot read IU report {file_path}: {e}") from e
            yield parse_iu_xml(data, int(match.group(1)), str(file_path))


def is_iu_source(path: str | os.PathLike[str]) -> bool:
    """True for a .tgz/.tar.gz archive or a folder holding numbered report XMLs (N.xml)."""
    p = Path(path)
    if p.is_file():
        return p.name.endswith((".tgz", ".tar.gz", ".tar"))
    if p.is_dir():
        for _root, _dirs, files in os.walk(p):
            if any(_XML_NAME.search(f) for f in files):
                return True
    return False


def load_iu_reports(path: str | os.PathLike[str] | None = None, ids: str = "all") -> list[IUReport]:
    """Load IU reports sorted by id from a tgz or an extracted folder (default: torchxrayvision's tgz).

    ids: "all", "even" (development / tuning) or "odd" (reserved for acceptance: do not tune on it).
    """
    if ids not in ID_SELECTIONS:
        raise UserError(f"ids must be one of {ID_SELECTIONS}, got {ids!r}")
    source = Path(path) if path is not None else default_iu_path()
    if not source.exists():
        raise UserError(f"IU reports path does not exist: {source}")
    reports = list(_iter_folder(source, ids) if source.is_dir() else _iter_tgz(source, ids))
    reports.sort(key=lambda r: r.id)
    return reports

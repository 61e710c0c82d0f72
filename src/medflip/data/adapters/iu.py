"""Indiana University chest X-rays (OpenI / NLM: "NLMCXR").

Layout: report XMLs (``ecgen-radiology/N.xml``, anywhere under ROOT, or ``--reports`` = a folder or the
``NLMCXR_reports.tgz``; default: ROOT, then torchxrayvision's bundled tgz) and PNGs named by image id
(``NLMCXR_png/CXR1_1_IM-0001-3001.png``) anywhere under ROOT. Each XML's ``<parentImage id=...>`` lists
its images; each image becomes one row with the report's findings + impression.

Labels from medflip's report labeler (docs/labeler.md) on findings + impression; the NLM MeSH major terms are kept
in ``mesh`` for reference. View: torchxrayvision's t-SNE-derived PA / lateral table (more reliable than
the DICOM header, per torchxrayvision), else the DICOM "View Position" it also bundles. Patient = the
report uid (IU has one report per patient). A report with neither findings nor impression is a bad row.
"""

from __future__ import annotations

import os
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from medflip.data.adapters._common import (
    ImportContext,
    images_by_stem,
    norm_view,
    report_labels,
    xrv_data_file,
)
from medflip.errors import UserError
from medflip.labeler.iu_reports import default_iu_path, parse_iu_xml


def _xml_sources(source: Path) -> Iterator[tuple[str, bytes]]:
    if source.is_file():
        try:
            with tarfile.open(source, "r:*") as tar:
                for m in tar:
                    if m.isfile() and m.name.endswith(".xml"):
                        f = tar.extractfile(m)
                        if f is not None:
                            yield f"{source}:{m.name}", f.read()
        except (tarfile.TarError, OSError) as e:
            raise UserError(f"cannot read IU reports archive {source}: {e}") from e
        return
    for d, _s, files in os.walk(source):
        for name in sorted(files):
            if name.endswith(".xml"):
                yield os.path.join(d, name), Path(d, name).read_bytes()


def _default_reports(root: Path) -> Path:
    if any(root.rglob("*.xml")):
        return root

    return default_iu_path()


def _bundled_views() -> dict[str, str]:
    views: dict[str, str] = {}
    dicom_table, tsne_table = (
        xrv_data_file("nlmcxr_dicom_metadata.csv.gz"),
        xrv_data_file("nlmcxr_tsne_pa.csv.gz"),
    )
    try:
        if dicom_table is not None:
            dicom = pd.read_csv(dicom_table, usecols=["imageid", "View Position"], dtype=str)
            views.update(zip(dicom["imageid"], dicom["View Position"].fillna("")))
        if tsne_table is not None:
            tsne = pd.read_csv(tsne_table, dtype=str)
            views.update((k, v) for k, v in zip(tsne["imageid"], tsne["tsne-view"].fillna("")) if v)
    except Exception:  # optional knowledge
        pass
    return views


def run(ctx: ImportContext) -> pd.DataFrame:
    reports_src = Path(ctx.opt("reports")) if ctx.opt("reports") else _default_reports(ctx.root)
    images = images_by_stem(ctx.root, (".png", ".jpg", ".jpeg", ".dcm"))
    if not images:
        raise UserError(f"no IU images (PNG) under {ctx.root}")
    views = _bundled_views()
    rows, listed = [], set()
    for source, data in _xml_sources(reports_src):
        report = parse_iu_xml(data, source=source)
        try:
            image_ids = [n.get("id", "") for n in ET.fromstring(data).iter("parentImage")]
        except ET.ParseError as e:
            raise UserError(f"cannot parse IU report XML {source}: {e}") from e
        text = report.text
        listed.update(image_ids)
        for k, image_id in enumerate(image_ids):
            path = images.get(image_id)
            if path is None:
                continue  # the image subset on disk may be partial: reports are matched to images, see below
            if not text:
                ctx.rejects.bad(
                    source, f"parentImage {k} ({image_id})", "empty report: no findings or impression"
                )
                continue
            rows.append(
                {
                    "path": str(path),
                    "source": "iu",
                    "patient_id": report.uid,
                    "study_id": report.uid,
                    "view": norm_view(views.get(image_id, "")),
                    "split": "",
                    "class": "",
                    "report": text,
                    "findings": report.findings,
                    "impression": report.impression,
                    "mesh": "; ".join(report.mesh_major),
                    "_image": image_id,
                }
            )
    if not rows:
        raise UserError(f"no IU images under {ctx.root} match the reports in {reports_src}")
    out = pd.DataFrame(rows).sort_values(["patient_id", "_image"], key=_natural).reset_index(drop=True)
    absent = len(listed - set(images))
    if absent:  # not rows of any table: a partial image download; said out loud, never silent
        print(f"note: {absent} images listed in the IU reports are not under {ctx.root}", file=sys.stderr)
    unmatched = sorted(set(images) - listed)
    for image_id in unmatched:
        ctx.rejects.bad(images[image_id], image_id, "image has no report XML listing it (parentImage)")
    labels = pd.DataFrame(report_labels(list(out["report"])))
    return pd.concat([out.drop(columns="_image"), labels], axis=1)


def _natural(col: pd.Series) -> pd.Series:
    """Sort CXR2 before CXR10 (numeric part first) so imports are stable and readable."""
    if col.name != "patient_id":
        return col
    return col.str.extract(r"(\d+)")[0].fillna("0").astype(int)

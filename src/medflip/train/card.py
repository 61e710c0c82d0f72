"""Model card: a README.md in every trained `model/` folder, so a model found on disk explains itself.

What was it trained on (cache, split, manifest sha256, text source), for how long (steps, training
wall-clock), with which config, how it scored during training (the last validation row of log.csv), how to
prepare its inputs (the recorded preprocessing), and what it is for: research, **not clinical use**.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from medflip._version import __version__
from medflip.train.checkpoint import latest_checkpoint

INTENDED_USE = """## Intended use

Research on chest X-ray vision-language representation learning: zero-shot classification, image-text
retrieval, linear probing / fine-tuning, and comparisons between pre-training methods.

**Not for clinical use.** This model is not a medical device and was not validated for diagnosis, triage or
any decision about a patient. Its labels come from dataset tables and a rule-based report labeler (both
imperfect), its training data reflect the hospitals, scanners and populations they came from, and its
zero-shot scores depend on the wording of the prompts."""


def _last_validation(log_csv: Path) -> dict[str, Any] | None:
    if not log_csv.is_file():
        return None
    last = None
    with log_csv.open() as f:
        for row in csv.DictReader(f):
            vals = {k: v for k, v in row.items() if k and k.startswith("val_") and v not in ("", None)}
            if vals:
                last = {"step": row.get("step"), **vals}
    return last


def model_card(
    cfg: Any,
    *,
    steps: int,
    elapsed_s: float,
    data: dict[str, Any],
    preprocess: dict[str, Any],
    validation: dict[str, Any] | None,
    model_name: str = "MedFLIP",
) -> str:
    """The card's Markdown. data: cache, split, images, manifest_sha256, texts; preprocess: config.json's."""
    c = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    model, train = c.get("model", {}), c.get("train", {})
    vision = model.get("vision", {})
    cache_size = preprocess.get("cache_size") or vision.get("image_size")
    lines = [
        f"# {model_name} model card",
        "",
        "Research software: **not for clinical use** (see Intended use).",
        "",
        f"A CLIP-style chest X-ray / report dual encoder trained with medflip {__version__} (MedFLIP: FLIP",
        "patch masking, semantic soft targets from report labels, SVD loss).",
        "",
        "## Data",
        "",
        f"- images: cache `{data.get('cache', '')}`, split `{data.get('split', '')}`, "
        f"{data.get('images', '?')} images",
        f"- manifest sha256: `{data.get('manifest_sha256', 'unknown')}`",
        f"- texts: `{data.get('texts', '')}`",
        "",
        "## Training",
        "",
        f"- steps: {steps} of {train.get('steps', '?')}; training wall-clock {elapsed_s:.1f} s "
        "(validation and checkpoint writing excluded)",
        f"- image tower ViT-{vision.get('size', '?')}/{vision.get('patch_size', 16)} at "
        f"{vision.get('image_size', '?')} px; text tower `{model.get('text', {}).get('name', '?')}`; "
        f"mask ratio {train.get('mask_ratio', '?')}; batch {c.get('data', {}).get('batch_size', '?')}",
        "",
        "## Last validation metrics",
        "",
    ]
    if validation:
        step = validation.pop("step", "?")
        task = f"{train.get('eval_task', '')} on `{train.get('eval_cache') or data.get('cache', '')}` [{train.get('eval_split', '')}]"
        lines += [f"Zero-shot {task}, step {step}:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k[4:]} | {v} |" for k, v in validation.items()]
    else:
        lines.append("None recorded (enable with `--train.eval_every N --train.eval_split val`).")
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Images are read to 8-bit grayscale (DICOM: modality LUT, window / VOI LUT, MONOCHROME1 inverted), "
        f"resized with `{preprocess.get('resize', 'fit-longer-side-pad-black')}` (longer side to {cache_size} px, "
        f"black padding to a square), resized to {vision.get('image_size', '?')} px (bilinear, antialiased) and "
        f"normalised as (x / 255 - {preprocess.get('mean', 0.5)}) / {preprocess.get('std', 0.25)}. "
        "`medflip.load` replays exactly this:",
        "",
        "```python",
        "import medflip",
        'model, preprocess = medflip.load("path/to/this/folder")',
        'probs = model.predict(["image.dcm"], classes=["Normal", "Pneumonia"]).probs',
        "```",
        "",
        INTENDED_USE,
        "",
        "## Config",
        "",
        "```json",
        json.dumps(c, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: Path, cfg: Any, run_dir: Path, data: dict[str, Any]) -> Path:
    """Write model_dir/README.md from the run folder (last checkpoint's state, log.csv) and config.json."""
    model_dir, run_dir = Path(model_dir), Path(run_dir)
    state: dict[str, Any] = {}
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
    meta = json.loads((model_dir / "config.json").read_text())
    text = model_card(
        cfg,
        steps=int(state.get("step", 0)),
        elapsed_s=float(state.get("elapsed_s", 0.0)),
        data=data,
        preprocess=meta.get("preprocess") or {},
        validation=_last_validation(run_dir / "log.csv"),
    )
    path = model_dir / "README.md"
    path.write_text(text)
    return path

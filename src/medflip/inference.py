"""Use a trained model on your own files: `medflip.load` (Python) and `medflip predict` (command line).

    import medflip
    model, preprocess = medflip.load("runs/mimic/model")
    x = preprocess("study.dcm")                      # [1, S, S]: the training cache's geometry + normalisation
    model.encode_image(x.unsqueeze(0))               # [1, E]; or model.encode_image(["a.png", "b.dcm"])
    model.predict(["a.png", "b.dcm"], classes=["Normal", "Pneumonia"]).probs   # [2, 2] zero-shot

`preprocess` replays what `medflip data cache` + evaluation did to the training images (recorded in the
model's config.json: cache size, resize policy, normalisation), so the model sees at inference the
geometry it was trained on. Not for clinical use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medflip.errors import UserError
from medflip.evaluate.prompts import load_prompts, prompts_for_classes
from medflip.model.medflip import MedFLIP, read_model_config
from medflip.observations import COMPETITION_TASKS
from medflip.runtime import resolve_device

PREDICT_HELP = """Zero-shot class probabilities for image files (JPEG, PNG, DICOM), no labels needed.

Classes: --classes A,B,... (default: the five CheXpert competition classes), each with medflip's curated
prompt set where it has one (CheXpert observations, Normal, Pneumonia, COVID-19) or the class name itself;
or --prompts FILE (JSON/YAML: class -> list of prompts). Images are preprocessed exactly as the model's
training cache (size, padding, normalisation from its config.json).

Examples:
  medflip predict --model runs/mimic/model scans/*.dcm
  medflip predict --model runs/kermany/model --classes Normal,Pneumonia img1.jpeg img2.jpeg --json pred.json
  medflip predict --model runs/mimic/model --prompts my_prompts.yaml scans/

Research software: not for clinical use.
"""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def load(path: str | Path, device: str = "auto"):
    """(model, preprocess) from a model folder (`save_pretrained`, a run's model/ or a checkpoint).

    model: MedFLIP in eval mode with the curated prompt sets wired into `model.predict(classes=...)`;
    preprocess: callable path / PIL / numpy / pydicom Dataset -> float tensor [1, S, S].
    """
    model = MedFLIP.from_pretrained(path, map_location=resolve_device(device)).eval()
    model.prompt_factory = prompts_for_classes
    return model, model.preprocess


def expand_images(items: list[str]) -> list[Path]:
    """Files as given; folders -> their image files (recursively, sorted). Missing paths are an error."""
    out: list[Path] = []
    missing = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            missing.append(item)
    if missing:
        raise UserError(
            f"image(s) not found: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        )
    if not out:
        raise UserError("no image files given (folders are searched for .png / .jpg / .jpeg / .dcm)")
    return out


def _predict(args: argparse.Namespace) -> int:
    read_model_config(Path(args.model))  # a clear error before any work
    files = expand_images(args.images)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    prompts = load_prompts(args.prompts, classes) if args.prompts else None
    if prompts is None and not classes:
        classes = list(COMPETITION_TASKS)
    model, _ = load(args.model, args.device)
    names = [str(f) for f in files]
    result = model.predict(
        files, classes=classes, prompts=prompts, batch_size=args.batch_size, precision=args.precision
    )
    records = result.to_records(names)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": str(args.model), "classes": result.classes, "predictions": records}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    width = max(len(n) for n in names)
    print(f"{'image':<{width}}  {'prediction':<18} " + " ".join(f"{c[:12]:>12}" for c in result.classes))
    for r in records:
        print(
            f"{r['image']:<{width}}  {r['label'][:18]:<18} "
            + " ".join(f"{r['probs'][c]:>12.3f}" for c in result.classes)
        )
    print("zero-shot probabilities (softmax over the classes given); research software, not for clinical use")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="zero-shot class probabilities for image files",
        description=PREDICT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="model folder (a run's model/, save_pretrained, a checkpoint)"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (JPEG, PNG, DICOM)")
    p.add_argument(
        "--classes", help="comma-separated class names (default: the 5 CheXpert competition classes)"
    )
    p.add_argument("--prompts", help="JSON/YAML file: class -> list of prompts (overrides the curated sets)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    p.add_argument("--json", help="write {classes, predictions: [{image, label, probs}]} here")
    p.set_defaults(func=_predict)

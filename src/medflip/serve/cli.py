"""`medflip serve` (a local web page on a model) and `medflip explain` (a grounding figure for one image)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medflip.errors import UserError

SERVE_DESCRIPTION = """Serve a local web page to look at a trained model.

Drop or pick a chest X-ray (PNG / JPEG / DICOM): the page shows zero-shot probabilities for the 14
observations and the CheXpert-5 classes, the most similar report sentences of a corpus (default: the IU
reports bundled with torchxrayvision; embedded once and cached on disk under the model's hash), and the
grounding heatmap of any phrase (default: the top finding). The page uses a JSON API that scripts can call:
  curl --data-binary @cxr.png 'http://127.0.0.1:8000/api/analyze'
  curl --data-binary @cxr.png 'http://127.0.0.1:8000/api/ground?phrase=pleural%20effusion'
Binds 127.0.0.1 (this machine only) unless --host says otherwise. Nothing is fetched from the internet.
"""

EXPLAIN_DESCRIPTION = """Where does a phrase point in an image? Writes a figure: the patch x word similarity of the
(unmasked) image with the phrase's words, averaged over words, minus the same map averaged over the 14
observation names (what is specific to this phrase; --raw: nothing subtracted), upsampled over the radiograph,
with a colour bar, the phrase and the image-text similarity in the title; for a short phrase (2-6 words) one panel per word.

  medflip explain --model runs/demo/model --image cxr.dcm --text "left pleural effusion" --out map.png
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="local web page: zero-shot bars, similar report sentences, grounding heatmaps",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, help="model folder (e.g. runs/demo/model)")
    p.add_argument(
        "--corpus", help="CSV / JSONL of reports for sentence retrieval (default: bundled IU reports)"
    )
    p.add_argument("--text-column", default="report", help="report column of --corpus (default: report)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest accepted upload (default: 32)")
    p.add_argument("--cache-dir", type=Path, help="corpus embedding cache (default: ~/.cache/medflip/serve)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.set_defaults(func=_serve)

    e = sub.add_parser(
        "explain",
        help="grounding figure: where a phrase points in an image",
        description=EXPLAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--model", required=True, type=Path, help="model folder")
    e.add_argument("--image", required=True, type=Path, help="PNG / JPEG / DICOM")
    e.add_argument("--text", required=True, help="the phrase to ground")
    e.add_argument("--out", type=Path, default=Path("grounding.png"), help="figure (default: grounding.png)")
    e.add_argument(
        "--raw", action="store_true", help="the raw similarity map (no reference phrases subtracted)"
    )
    e.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from medflip.evaluate.explain import ground_file, plot_grounding
    from medflip.model.medflip import MedFLIP

    if not args.text.strip():
        raise UserError("--text is empty: give a phrase to ground")
    model = MedFLIP.from_pretrained(args.model).eval()
    try:
        g, shown = ground_file(model, args.image, args.text, reference=() if args.raw else None)
    except ValueError as e:
        raise UserError(str(e)) from e
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_grounding(g, shown, args.text, args.out)
    print(
        f"{args.out}: {args.text!r} in {args.image}, image-text similarity {g.similarity:.3f} ({len(g.words)} words)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from medflip.serve.app import create_app
    from medflip.serve.inference import Analyzer

    corpus = None
    if args.corpus:
        from medflip.data.texts import load_text_reports

        corpus = load_text_reports(args.corpus, args.text_column)
    analyzer = Analyzer(args.model, corpus=corpus, cache_dir=args.cache_dir, device=args.device)
    app = create_app(analyzer, max_upload_mb=args.max_upload_mb)
    print(f"medflip serve: http://{args.host}:{args.port}/  (model {args.model}; Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

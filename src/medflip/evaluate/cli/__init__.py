"""`medflip eval ...`: zero-shot, retrieval, linear probe, fine-tuning, data/time efficiency.

  zeroshot     zero-shot classification with prompt ensembles
  retrieval    image<->text retrieval, Precision@K by category
  probe        linear probe on frozen image features, at data fractions
  finetune     fine-tuning of the image encoder + a linear head, at data fractions
  efficiency   zero-shot accuracy vs pre-training wall-clock / number of pre-training images

Every command validates its inputs (model folder, split, labels that fit the task) before any work,
and writes --json, a Markdown table and plots into --out when given.
"""

from __future__ import annotations

import argparse

from medflip.evaluate.cli.efficiency import EFFICIENCY_HELP, efficiency
from medflip.evaluate.cli.supervised import finetune, probe
from medflip.evaluate.cli.zeroshot import retrieval, zeroshot


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model: zero-shot, retrieval, probe, fine-tune, efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evals = p.add_subparsers(dest="eval_command", metavar="EVAL")

    def common(q):
        q.add_argument(
            "--model", required=True, help="model folder (save_pretrained / a run's model/ or checkpoint)"
        )
        q.add_argument("--cache", required=True, help="image cache folder (medflip data cache)")
        q.add_argument("--split", default="test")
        q.add_argument("--task", default="chexpert5", choices=["chexpert5", "binary"])
        q.add_argument("--positive", help="positive class of a binary task (e.g. Pneumonia, COVID-19)")
        q.add_argument("--seed", type=int, default=0, help="prompt sampling / bootstrap seed")
        q.add_argument("--batch-size", type=int, default=64)
        q.add_argument("--device", default="auto")
        q.add_argument(
            "--precision",
            default="auto",
            choices=["auto", "bf16", "fp32"],
            help="image encoding: auto = bf16 on CUDA, fp32 elsewhere; bf16 is 2-3x faster on AVX512-BF16 CPUs",
        )
        q.add_argument("--json", help="write the metrics here")
        q.add_argument("--out", help="folder for the Markdown table, JSON and plots")

    def pretraining_cache(q):
        q.add_argument(
            "--train-cache",
            help="the model's pre-training cache: warn when the evaluation split shares patients with it "
            "(default: the cache named in the model's run folder, RUN/config.json, when there is one)",
        )
        q.add_argument("--train-split", default="train", help="split of --train-cache that was trained on")

    z = evals.add_parser("zeroshot", help="zero-shot classification (prompt ensembles)")
    common(z)
    z.add_argument("--prompts-per-class", type=int, default=10)
    z.add_argument(
        "--prompts",
        help="JSON/YAML file: class -> list of prompts, exactly the task's classes (replaces the built-in sets)",
    )
    z.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    pretraining_cache(z)
    z.set_defaults(func=zeroshot)
    r = evals.add_parser(
        "retrieval",
        help="image<->text retrieval, Precision@K / Recall@K by category",
        description="Category-level retrieval as in the paper: the candidate texts are grouped by class, "
        "the same number per class (--per-class), so chance P@K is 1 / classes for every query. The "
        "protocol used is written into the JSON (`protocol`).",
    )
    common(r)
    r.add_argument(
        "--texts",
        default="paired",
        help="candidates: paired (the split's reports) | iu | CSV/JSONL with a report column | prompts "
        "(the class prompt generator; for sets without reports such as CheXpert-5x200)",
    )
    r.add_argument(
        "--per-class",
        type=int,
        default=200,
        help="candidate texts per class, seeded (default 200; fewer when the rarest class has fewer, "
        "all classes alike); 0: every candidate sentence, not balanced",
    )
    pretraining_cache(r)
    r.set_defaults(func=retrieval)

    def supervised(q):
        q.add_argument("--train-split", default="train", help="split the probe / fine-tuning trains on")
        q.add_argument(
            "--train-cache",
            help="cache of the training split (default: --cache); a patient in both splits is warned about",
        )
        q.add_argument(
            "--fractions",
            type=float,
            nargs="+",
            default=[0.01, 0.1, 1.0],
            help="fractions of the training split (class-stratified, seeded, >= 1 image per class)",
        )
        q.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")

    lp = evals.add_parser(
        "probe",
        help="linear probe on frozen image features at data fractions",
        description="Logistic regression (scikit-learn, L-BFGS) on the frozen image encoder's "
        "pooled features of --train-split, scored on --split.",
    )
    common(lp)
    supervised(lp)
    lp.add_argument("--C", default="auto", help="inverse L2 strength; auto: 3-fold CV over 1e-3..10")
    lp.set_defaults(func=probe)
    ft = evals.add_parser(
        "finetune",
        help="fine-tune the image encoder + a linear head at data fractions",
        description="Full fine-tuning (AdamW, warmup + cosine, augmentation) of the image "
        "encoder with a linear head on --train-split, scored on --split.",
    )
    common(ft)
    supervised(ft)
    ft.add_argument("--epochs", type=int, default=5)
    ft.add_argument("--min-steps", type=int, default=50, help="at least this many steps (small fractions)")
    ft.add_argument("--train-batch-size", type=int, default=32)
    ft.add_argument("--lr", type=float, default=1e-4, help="image encoder learning rate")
    ft.add_argument("--head-lr", type=float, default=1e-3)
    ft.add_argument("--weight-decay", type=float, default=0.05)
    ft.add_argument("--no-augment", action="store_true")
    ft.set_defaults(func=finetune)

    e = evals.add_parser(
        "efficiency",
        help="zero-shot accuracy vs pre-training wall-clock / number of pre-training images",
        description=EFFICIENCY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "--time-runs",
        nargs="+",
        default=[],
        metavar="[LABEL=]RUN",
        help="run folders: every checkpoint is evaluated, x = its training wall-clock",
    )
    e.add_argument(
        "--data-runs",
        nargs="+",
        default=[],
        metavar="[LABEL=]RUN",
        help="run folders pre-trained on subsets: the final model is evaluated",
    )
    e.add_argument(
        "--samples",
        type=int,
        nargs="+",
        help="pre-training images of each --data-runs run "
        "(default: from the run's config.json: its cache split size x data.fraction)",
    )
    e.add_argument(
        "--max-checkpoints",
        type=int,
        default=0,
        help="evaluate at most this many checkpoints per run, evenly spaced (0: all)",
    )
    e.add_argument("--cache", required=True, help="image cache folder with the evaluation split")
    e.add_argument("--split", default="test")
    e.add_argument("--task", default="chexpert5", choices=["chexpert5", "binary"])
    e.add_argument("--positive", help="positive class of a binary task")
    e.add_argument("--prompts-per-class", type=int, default=10)
    e.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples per model for the 95%% CIs"
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="write the results here")
    e.add_argument("--out", help="folder for the Markdown tables, JSON and PNG plots")
    e.set_defaults(func=efficiency)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

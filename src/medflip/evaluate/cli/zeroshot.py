"""`medflip eval zeroshot` and `medflip eval retrieval`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medflip.data.streams import TextCorpus
from medflip.data.texts import load_text_reports
from medflip.errors import UserError
from medflip.evaluate.candidates import balanced_pick, sentence_candidates
from medflip.evaluate.cli.common import (
    fmt,
    load,
    load_model,
    pretraining_overlap,
    task_images,
    task_prompts,
    write_outputs,
)
from medflip.evaluate.plots import plot_confusion
from medflip.evaluate.tasks import resolve_task
from medflip.evaluate.zeroshot import encode_images, zero_shot
from medflip.evaluate.zeroshot import retrieval as retrieval_scores


def zeroshot(args) -> int:
    cache = load(args)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    prompts = task_prompts(args, names)
    leak = pretraining_overlap(args, cache.rows)
    model = load_model(args)
    emb = encode_images(
        model, task_images(cache, keep), batch_size=args.batch_size, progress=True, precision=args.precision
    )
    m = zero_shot(model, None, y, prompts, image_embeds=emb, n_boot=args.bootstrap, seed=args.seed)
    m.update(task=args.task, split=args.split, model=str(args.model), prompt_seed=args.seed)
    if leak is not None:
        m["pretraining_overlap"] = leak
    table = "\n".join(
        [
            f"zero-shot {args.task} on {args.cache} [{args.split}], n = {m['n']}",
            "",
            "| metric | value (95% bootstrap CI) |",
            "|---|---|",
            *[f"| {k} | {fmt(m, k)} |" for k in ("accuracy", "macro_f1", "auroc")],
        ]
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot_confusion(
            m["confusion"], m["classes"], Path(args.out) / "zeroshot_confusion.png", f"zero-shot {args.task}"
        )
    write_outputs(args, "zeroshot", m, table)
    return 0


def _candidate_texts(args, cache, names: list[str]) -> tuple[list[str], np.ndarray, dict]:
    """Retrieval candidates grouped by class, the same count per class (medflip.evaluate.candidates)."""
    protocol: dict = {"seed": args.seed, "classes": names}
    if args.texts == "prompts":
        n = args.per_class or 10
        prompts = task_prompts(argparse.Namespace(**{**vars(args), "prompts_per_class": n}), names)
        take = min(n, *(len(ps) for ps in prompts.values()))  # the fixed binary sets differ in size
        texts = [p for ps in prompts.values() for p in ps[:take]]
        cats = np.repeat(np.arange(len(names)), take)
        protocol.update(
            candidates="class prompts of the zero-shot prompt generator (the prompts are in `prompts`)",
            balanced=True,
            per_class=[take] * len(names),
            prompts={k: ps[:take] for k, ps in prompts.items()},
        )
        return texts, cats, protocol

    reports = (
        cache.rows["report"].fillna("").tolist()
        if args.texts == "paired"
        else load_text_reports(args.texts, "report")
    )
    corpus = TextCorpus.from_reports([r for r in reports if r.strip()])
    texts, cats, duplicates = sentence_candidates(
        corpus.sentences, corpus.sentence_labels, args.task, args.positive
    )
    if not texts:
        raise UserError(f"no report sentence in {args.texts!r} names exactly one class of task {args.task}")
    available = np.bincount(cats, minlength=len(names)).tolist()
    protocol.update(
        candidates=f"report sentences of {args.texts!r} whose labels name exactly one class of the task",
        duplicates_dropped=duplicates,
        available_per_class=available,
    )
    if args.per_class:
        pick, take = balanced_pick(cats, len(names), args.per_class, args.seed)
        texts, cats = [texts[i] for i in pick], cats[pick]
        protocol.update(balanced=True, per_class=[take] * len(names), requested_per_class=args.per_class)
        if take < args.per_class:
            print(
                f"retrieval: {take} candidate sentences per class (asked {args.per_class}; the rarest class has "
                f"{take}; available per class: {available})"
            )
    else:
        protocol.update(balanced=False, per_class=available)
    return texts, cats, protocol


def retrieval(args) -> int:
    cache = load(args)
    names, y, keep = resolve_task(cache.rows, args.task, args.positive)
    texts, cats, protocol = _candidate_texts(args, cache, names)
    leak = pretraining_overlap(args, cache.rows)
    model = load_model(args)
    img = encode_images(
        model, task_images(cache, keep), batch_size=args.batch_size, progress=True, precision=args.precision
    )
    txt = model.encode_text(texts).float().cpu()
    m = retrieval_scores(img, y, txt, cats)
    m.update(task=args.task, split=args.split, classes=names, model=str(args.model), protocol=protocol)
    if leak is not None:
        m["pretraining_overlap"] = leak
    rows = [
        f"| {d} | "
        + " | ".join(f"{m[d][f'p@{k}']:.3f}" for k in (1, 2, 5, 10))
        + " | "
        + " | ".join(f"{m[d][f'r@{k}']:.3f}" for k in (1, 5, 10))
        + " |"
        for d in ("image_to_text", "text_to_image")
    ]
    per = protocol["per_class"]
    pool = f"{per[0]} per class" if protocol["balanced"] else f"not balanced: {per} per class"
    table = "\n".join(
        [
            f"retrieval {args.task}: {m['n_images']} images, {m['n_texts']} candidate texts ({pool})",
            "",
            "| direction | P@1 | P@2 | P@5 | P@10 | R@1 | R@5 | R@10 |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    write_outputs(args, "retrieval", m, table)
    return 0

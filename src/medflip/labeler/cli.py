"""`medflip label`, `medflip label-eval`, `medflip label-bench`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tqdm import tqdm


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label",
        help="label reports with the 14 CheXpert observations (CSV / JSONL / MIMIC folder / IU tgz or folder)",
        description="Write the CheXpert labeler's CSV format: the id column, then one column per observation "
        "with 1 (positive), 0 (negative), -1 (uncertain) or blank (not mentioned).",
    )
    p.add_argument(
        "input", help="a .csv or .jsonl file, a MIMIC-CXR reports folder, or the IU reports .tgz / XML folder"
    )
    p.add_argument("--out", required=True, help="output CSV path")
    p.add_argument("--text-column", help="column with the report text (CSV / JSONL; guessed when omitted)")
    p.add_argument("--id-column", help="column with the report id (CSV / JSONL; row number when omitted)")
    p.add_argument(
        "--sentences", action="store_true", help="write one row per sentence with sentence-level labels"
    )
    p.add_argument(
        "--sections",
        choices=("findings+impression", "all"),
        default="findings+impression",
        help="MIMIC .txt reports: label only FINDINGS + IMPRESSION (default) or the whole text",
    )
    p.add_argument(
        "--convention",
        choices=("chexpert", "iu"),
        default="chexpert",
        help="chexpert (default): read reports like the CheXpert labeler (MIMIC-CXR's and CheXpert's labels: "
        "'may represent pneumonia' -> -1, borderline heart size -1, other abnormalities do not block No Finding); "
        "iu: like the IU radiologists' MeSH coding (docs/labeler.md lists every difference)",
    )
    p.add_argument(
        "--hypothetical",
        choices=("ignore", "uncertain"),
        default="ignore",
        help="a mention that is only a question or a past event ('evaluate for pneumonia', 'history of "
        "pneumonia'): no label (default) or -1",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_label)

    e = subparsers.add_parser(
        "label-eval",
        help="score the labeler on the IU reports against the MeSH major terms",
        description="Per-observation precision / recall / F1, macro- and micro-F1, uncertain counted as positive and "
        "as negative, and error examples. Development uses EVEN ids (default); --ids odd is reserved for the "
        "acceptance run: do not tune on it.",
    )
    e.add_argument("--path", help="IU reports .tgz or XML folder (default: the copy inside torchxrayvision)")
    e.add_argument(
        "--ids",
        choices=("even", "odd", "all"),
        default="even",
        help="even (development, default); odd = acceptance only, DO NOT TUNE ON THIS",
    )
    e.add_argument(
        "--convention",
        choices=("iu", "chexpert"),
        default="iu",
        help="labelling convention to score: iu (default: the reading of the reference MeSH coding) or chexpert "
        "(medflip label's default); the other one's macro-F1 is printed too",
    )
    e.add_argument("--errors", type=int, default=3, help="error examples per observation (default 3)")
    e.add_argument("--json", help="also write the scores as JSON here")
    e.set_defaults(func=run_label_eval)

    b = subparsers.add_parser("label-bench", help="labeler throughput (reports/s on one core)")
    b.add_argument(
        "--reports", type=int, default=50_000, help="reports to label (IU even-id texts, repeated)"
    )
    b.add_argument("--core", type=int, default=None, help="pin the process to this CPU core (Linux)")
    b.add_argument(
        "--worst-case",
        action="store_true",
        help="instead: time every rule phrase repeated to 100 kB (catastrophic backtracking / quadratic scans "
        "would show here) and list the slowest (takes a few minutes)",
    )
    b.set_defaults(func=run_label_bench)


def run_label(args: argparse.Namespace) -> int:
    # The labeler's modules are imported by the command that runs them: `medflip label --help` (and every
    # other command's start, which registers this module) must not pay for them.
    from medflip.labeler.engine import label_report, label_values
    from medflip.labeler.io import read_reports, write_labels_csv, write_sentences_csv
    from medflip.labeler.rules import default_rules

    rules = default_rules(args.hypothetical, args.convention)
    source = read_reports(args.input, args.text_column, args.id_column, args.sections)
    progress = dict(total=len(source.texts), unit="report", disable=args.no_progress, desc="labelling")
    if args.sentences:

        def rows():
            for report_id, text in tqdm(zip(source.ids, source.texts), **progress):
                for index, sentence in enumerate(label_report(text, rules).sentences):
                    yield report_id, index, sentence.text, list(sentence.values.values())

        write_sentences_csv(args.out, source.id_column, rows())
    else:
        values = list(label_values(tqdm(source.texts, **progress), rules))
        write_labels_csv(args.out, source.id_column, source.ids, values)
    missing = source.missing_text
    note = f"; {missing} row(s) without text (written with blank labels)" if missing else ""
    print(
        f"labelled {len(source.texts)} report(s) from {args.input} ({source.kind}) -> {args.out}{note}",
        file=sys.stderr,
    )
    return 0


def run_label_eval(args: argparse.Namespace) -> int:
    from medflip.labeler.evaluate import evaluate_iu, format_results

    if args.ids != "even":
        print(
            f"note: scoring {args.ids} ids; odd ids are for acceptance only - do not tune rules on them",
            file=sys.stderr,
        )
    results = evaluate_iu(args.path, ids=args.ids, max_errors=args.errors, convention=args.convention)
    print(format_results(results, show_errors=args.errors > 0))
    other = "chexpert" if args.convention == "iu" else "iu"
    other_results = evaluate_iu(args.path, ids=args.ids, max_errors=0, convention=other)
    print(
        f"with --convention {other}: macro-F1 {other_results['positive'].macro_f1:.3f} (uncertain=positive), "
        f"{other_results['negative'].macro_f1:.3f} (uncertain=negative)"
    )
    if args.json:
        payload = {
            "ids": results["ids"],
            "convention": results["convention"],
            f"{other}_convention_macro_f1": {
                "uncertain_positive": other_results["positive"].macro_f1,
                "uncertain_negative": other_results["negative"].macro_f1,
            },
            "reports": results["reports"],
            "skipped": results["skipped"],
            "seconds": results["seconds"],
        }
        for policy in ("positive", "negative"):
            s = results[policy]
            payload[f"uncertain_{policy}"] = {
                "macro_f1": s.macro_f1,
                "micro_f1": s.micro_f1,
                "macro_observations": s.macro_observations,
                "per_observation": s.per_observation,
            }
        payload["errors"] = results["errors"]
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return 0


def run_label_bench(args: argparse.Namespace) -> int:
    from medflip.labeler.bench import benchmark, format_benchmark, format_worst_case, worst_case

    if args.core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    if args.worst_case:
        print(format_worst_case(worst_case()))
        return 0
    print(format_benchmark(benchmark(args.reports, core=args.core)))
    return 0

"""`medflip label-bench`: labeler throughput on one core, and a check that time grows linearly with length.

Wall-clock numbers on a shared machine are noisy, so CPU time of this process is reported too; the texts are
the IU reports with EVEN ids (findings + impression), repeated to the requested count.
"""

from __future__ import annotations

import os
import time

from medflip.labeler.engine import label_report, label_values
from medflip.labeler.iu_reports import load_iu_reports
from medflip.labeler.rules import default_rules


def _texts() -> list[str]:
    return [r.text for r in load_iu_reports(ids="even") if r.text]


def _timed(texts: list[str]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in label_values(texts):
        pass
    return time.perf_counter() - wall, time.process_time() - cpu


def benchmark(n_reports: int = 50_000, core: int | None = None) -> dict:
    """Label `n_reports` reports in this (single-threaded) process; optionally pin it to one core first."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    base = _texts()
    corpus = (base * (n_reports // len(base) + 1))[:n_reports]
    _timed(base[:500])  # compile the rules, warm the caches
    wall, cpu = _timed(corpus)
    chars = sum(len(t) for t in corpus)
    linear = []
    for k in (1, 10, 100):  # the same text material, in reports k times longer
        long_texts = [" ".join(base[i : i + k]) for i in range(0, min(len(base), 200 * k), k)]
        n_chars = sum(len(t) for t in long_texts)
        w, c = _timed(long_texts)
        linear.append(
            {
                "reports_joined": k,
                "texts": len(long_texts),
                "chars": n_chars,
                "cpu_s": c,
                "chars_per_cpu_s": n_chars / max(c, 1e-9),
            }
        )
    return {
        "reports": len(corpus),
        "mean_chars": chars / len(corpus),
        "wall_s": wall,
        "cpu_s": cpu,
        "reports_per_s": len(corpus) / max(wall, 1e-9),
        "reports_per_cpu_s": len(corpus) / max(cpu, 1e-9),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "linearity": linear,
    }


def format_benchmark(result: dict) -> str:
    lines = [
        f"labelled {result['reports']} reports (mean {result['mean_chars']:.0f} chars) in {result['wall_s']:.2f} s wall, "
        f"{result['cpu_s']:.2f} s CPU, one process, cores allowed: {result['affinity']}",
        f"throughput: {result['reports_per_s']:,.0f} reports/s (wall), {result['reports_per_cpu_s']:,.0f} reports/s (CPU time)",
        "linearity (same text, longer reports):",
    ]
    for row in result["linearity"]:
        lines.append(
            f"  {row['reports_joined']:4d} reports per text: {row['chars_per_cpu_s'] / 1e6:6.2f} M chars / CPU-s "
            f"({row['texts']} texts, {row['chars']} chars)"
        )
    return "\n".join(lines)


def worst_case(
    size: int = 100_000, top: int = 15, separators: tuple[str, ...] = (" ", ", ", ". ", " no ")
) -> list:
    """CPU ms to label `size` characters made of one rule phrase repeated, for every phrase of the rule files
    and each separator, both paths (label_report with sentences and evidence, and label_values); slowest first.

    This is where catastrophic backtracking or a quadratic scan would show: each phrase kind (mention,
    exclusion, subject, qualifier, trigger, terminator) repeated densely is its own worst case.
    """
    rules = default_rules()
    phrases = sorted({p.replace("*", "xx") for p in rules.exact})
    phrases += [w.pattern.replace("[a-z0-9]*", "xx") for w, _ in rules.wildcard]
    extra = ["a", "1", ";", ",", "\n"]  # punctuation-only and one-letter sentences
    rows = []

    def cpu_ms(fn, text: str) -> float:
        best = float("inf")
        for _ in range(2):
            start = time.process_time()
            fn(text)
            best = min(best, time.process_time() - start)
        return best * 1000

    label_report("warm up", rules)
    for phrase in phrases + extra:
        for sep in separators:
            text = ((phrase + sep) * (size // (len(phrase) + len(sep)) + 1))[:size]
            detail = cpu_ms(lambda t: label_report(t, rules), text)
            fast = cpu_ms(lambda t: list(label_values([t], rules)), text)
            rows.append({"phrase": phrase, "separator": sep, "detail_ms": detail, "fast_ms": fast})
    rows.sort(key=lambda r: -max(r["detail_ms"], r["fast_ms"]))
    return rows[:top]


def format_worst_case(rows: list, size: int = 100_000) -> str:
    lines = [f"slowest {len(rows)} of every rule phrase repeated to {size:,} characters (CPU ms, best of 2):"]
    for r in rows:
        lines.append(
            f"  {max(r['detail_ms'], r['fast_ms']):7.1f} ms  (label_report {r['detail_ms']:6.1f}, "
            f"label_values {r['fast_ms']:6.1f})  {r['phrase']!r} + {r['separator']!r}"
        )
    return "\n".join(lines)

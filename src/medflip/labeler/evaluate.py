"""Score the labeler on the IU reports against reference labels from the NLM MeSH <major> terms.

The reference comes from `rules/mesh_mapping.tsv` (documented there and in docs/labeler.md). The task is
"positive vs absent" per observation: the labeler's 1 counts as positive, 0 / None as absent, and -1 counts
either way (`uncertain="positive"` or `"negative"`); the report is scored on findings + impression.

Development and tuning use EVEN ids only (the default); ODD ids are reserved for the acceptance run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medflip.errors import UserError
from medflip.labeler import rules as R
from medflip.labeler.engine import label_report, label_values
from medflip.labeler.iu_reports import load_iu_reports
from medflip.observations import OBSERVATIONS

NORMAL, NEUTRAL, UNINDEXED = "normal", "neutral", "unindexed"
MIN_POSITIVES = 20  # observations with fewer reference positives are shown but left out of macro / micro


@dataclass(frozen=True)
class MeshRule:
    head: str
    requires_any: frozenset[str]
    excludes_any: frozenset[str]
    maps_to: str


def load_mesh_mapping(path: Path | None = None) -> list[MeshRule]:
    path = Path(path) if path is not None else R.rules_dir() / "mesh_mapping.tsv"
    allowed = {*OBSERVATIONS, NORMAL, NEUTRAL, UNINDEXED}
    rules = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = (line.split("\t") + ["", "", "", ""])[:4]
        head, requires, excludes, maps_to = (c.strip() for c in cells)
        if maps_to not in allowed:
            raise UserError(
                f"{path}:{lineno}: maps_to {maps_to!r} is not an observation or {NORMAL}/{NEUTRAL}"
            )

        def split(cell: str) -> frozenset[str]:
            return frozenset(q.strip().lower() for q in cell.split(",") if q.strip())

        rules.append(MeshRule(head.lower(), split(requires), split(excludes), maps_to))
    return rules


def map_mesh_term(term: str, mapping: Sequence[MeshRule]) -> list[str]:
    """Targets of one MeSH major term ([] means: an abnormality outside the 14 observations)."""
    head, *qualifiers = [p.strip().lower() for p in term.split("/")]
    quals = set(qualifiers)
    out = []
    for rule in mapping:
        if rule.head != head:
            continue
        if rule.requires_any and not (rule.requires_any & quals):
            continue
        if rule.excludes_any & quals:
            continue
        out.append(rule.maps_to)
    return out


def reference_labels(mesh_major: Sequence[str], mapping: Sequence[MeshRule]) -> set[str] | None:
    """Observations positive in the reference; None if the report is not indexed (left out)."""
    positives: set[str] = set()
    blocks_no_finding = False
    unindexed = False
    for term in mesh_major:
        targets = map_mesh_term(term, mapping)
        if not targets:
            blocks_no_finding = True
        for target in targets:
            if target == UNINDEXED:
                unindexed = True
            elif target not in (NORMAL, NEUTRAL):
                positives.add(target)
                if target != "Support Devices":
                    blocks_no_finding = True
    if unindexed or not mesh_major:
        return None
    if not blocks_no_finding:
        positives.add("No Finding")
    return positives


@dataclass
class Scores:
    uncertain: str
    per_observation: dict[str, dict[str, float]]
    macro_f1: float
    micro_f1: float
    macro_observations: list[str]
    errors: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(
    predictions: Sequence[Sequence[int | None]], references: Sequence[set[str]], uncertain: str
) -> Scores:
    positive_values = {1, -1} if uncertain == "positive" else {1}
    counts = {o: [0, 0, 0, 0] for o in OBSERVATIONS}  # tp, fp, fn, n_reference_positive
    for values, ref in zip(predictions, references):
        for k, obs in enumerate(OBSERVATIONS):
            pred = values[k] in positive_values
            truth = obs in ref
            c = counts[obs]
            c[0] += pred and truth
            c[1] += pred and not truth
            c[2] += truth and not pred
            c[3] += truth
    per = {}
    for obs, (tp, fp, fn, n) in counts.items():
        p, r, f = _f1(tp, fp, fn)
        per[obs] = {"precision": p, "recall": r, "f1": f, "positives": n, "tp": tp, "fp": fp, "fn": fn}
    chosen = [o for o in OBSERVATIONS if counts[o][3] >= MIN_POSITIVES]
    macro = sum(per[o]["f1"] for o in chosen) / len(chosen) if chosen else 0.0
    tp, fp, fn = (sum(counts[o][i] for o in chosen) for i in range(3))
    return Scores(uncertain, per, macro, _f1(tp, fp, fn)[2], chosen)


def evaluate_iu(
    path: str | None = None, ids: str = "even", max_errors: int = 5, convention: str = "iu"
) -> dict:
    """Label the IU reports, score both uncertainty policies, collect error examples and timing.

    convention: the labelling convention scored ("iu", the reading of the reference coding, by default; or
    "chexpert", medflip's default for labelling)."""
    rules = R.default_rules(convention=convention)
    mapping = load_mesh_mapping()
    reports = load_iu_reports(path, ids=ids)
    kept, references = [], []
    skipped = {"no text": 0, "not indexed": 0}
    for report in reports:
        ref = reference_labels(report.mesh_major, mapping)
        if not report.text:
            skipped["no text"] += 1
        elif ref is None:
            skipped["not indexed"] += 1
        else:
            kept.append(report)
            references.append(ref)
    start = time.perf_counter()
    predictions = list(label_values((r.text for r in kept), rules))
    seconds = time.perf_counter() - start
    results = {
        "ids": ids,
        "convention": convention,
        "reports": len(kept),
        "skipped": skipped,
        "seconds": seconds,
    }
    for policy in ("positive", "negative"):
        results[policy] = score(predictions, references, policy)
    errors: dict[str, list[dict]] = {o: [] for o in OBSERVATIONS}
    for report, values, ref in zip(kept, predictions, references):
        for k, obs in enumerate(OBSERVATIONS):
            pred, truth = values[k] in (1, -1), obs in ref
            if pred != truth and len(errors[obs]) < max_errors:
                labels = label_report(report.text, rules)
                why = [f"{e.phrase!r}->{e.value} ({e.trigger})" for e in labels.evidence.get(obs, [])]
                if obs == "No Finding":
                    why = [f"{e.observation}:{e.phrase!r}->{e.value}" for e in labels.other_findings][:4]
                errors[obs].append(
                    {
                        "id": report.uid,
                        "kind": "false positive" if pred else "false negative",
                        "predicted": values[k],
                        "mesh": report.mesh_major,
                        "evidence": why,
                        "text": report.text,
                    }
                )
    results["errors"] = errors
    return results


def format_results(results: dict, show_errors: bool = True) -> str:
    lines = [
        f"IU reports ({results['ids']} ids): {results['reports']} scored, skipped {results['skipped']}; "
        f"labelled in {results['seconds']:.2f} s; convention {results['convention']!r}",
        "",
        f"{'observation':28s} {'pos':>5s}   {'P':>5s} {'R':>5s} {'F1':>5s}  (uncertain=positive)"
        f"   {'P':>5s} {'R':>5s} {'F1':>5s}  (uncertain=negative)",
    ]
    pos, neg = results["positive"], results["negative"]
    for obs in OBSERVATIONS:
        a, b = pos.per_observation[obs], neg.per_observation[obs]
        mark = "" if obs in pos.macro_observations else "  (<20 positives, not in macro)"
        lines.append(
            f"{obs:28s} {a['positives']:5d}   {a['precision']:5.3f} {a['recall']:5.3f} {a['f1']:5.3f}"
            f"{'':22s}{b['precision']:5.3f} {b['recall']:5.3f} {b['f1']:5.3f}{mark}"
        )
    lines += [
        "",
        f"macro-F1 over {len(pos.macro_observations)} observations with >= {MIN_POSITIVES} positives: "
        f"{pos.macro_f1:.3f} (uncertain=positive), {neg.macro_f1:.3f} (uncertain=negative)",
        f"micro-F1 (same observations): {pos.micro_f1:.3f} (uncertain=positive), {neg.micro_f1:.3f} (uncertain=negative)",
        f"No Finding F1: {pos.per_observation['No Finding']['f1']:.3f}",
    ]
    if show_errors:
        lines += ["", "Error examples (uncertain counted as positive):"]
        for obs, items in results["errors"].items():
            for item in items:
                lines.append(
                    f"- {obs} {item['kind']} {item['id']} predicted={item['predicted']} mesh={item['mesh']}"
                )
                lines.append(f"    evidence: {item['evidence']}")
                lines.append(f"    text: {item['text'][:300]}")
    return "\n".join(lines)

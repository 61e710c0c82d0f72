"""docs/reproduction.md from the finished cells: claims, tables, figures, calibration, timing, what is missing."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from medflip.study import figures, stats
from medflip.study.aggregate import Aggregate, Metric, fmt, fmt_cmp, label, load_results
from medflip.study.plan import METHODS, StudyConfig, cells, command_line, pretrain_argv
from medflip.study.runner import cell_status

PRIMARY = Metric("probe", "bal_acc", 0.1)  # the separating task: 3-class probe, 10% labels
SECONDARY = Metric("zeroshot", "auroc")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {cpu} VM, no GPU"


def _verdict_helps(agg: Aggregate, a: str, b: str, fraction: float = 1.0, primary: Metric = PRIMARY) -> tuple:
    """(verdict, numbers) for "A is better than B" on the primary metric (secondary shown)."""
    c1, c2 = agg.compare(a, b, primary, fraction), agg.compare(a, b, SECONDARY, fraction)
    if c1 is None:
        return "not run", "cells missing"
    n = min(len(agg.group(a, fraction)), len(agg.group(b, fraction)))
    if n < 2:
        v = f"open ({n} seed)"
    else:
        v = {"better": "confirmed", "worse": "refuted"}.get(c1["verdict"], "not confirmed")
        if v == "not confirmed" and c2 is not None and c2["verdict"] in ("better", "worse"):
            v += f" ({c2['verdict']} on {SECONDARY.label} only)"  # the secondary metric disagrees: say so
    nums = f"{primary.label}: {fmt_cmp(c1)}; {SECONDARY.label}: {fmt_cmp(c2)}"
    return v, nums


def _one_metric_claim(agg: Aggregate, claim: str, metric: Metric, label: str) -> list[tuple[str, str, str]]:
    """ "MedFLIP is better than the MedCLIP objective on one metric": [] when its cells are missing."""
    c = agg.compare("medflip", "medclip", metric)
    if c is None:
        return []
    n = min(len(agg.group("medflip")), len(agg.group("medclip")))
    v = (
        f"open ({n} seed)"
        if n < 2
        else {"better": "confirmed", "worse": "refuted"}.get(c["verdict"], "not confirmed")
    )
    return [(claim, v, f"{label}: {fmt_cmp(c)}")]


def _claims(agg: Aggregate) -> list[tuple[str, str, str]]:
    rows = []
    # FLIP: masking buys throughput at no loss of accuracy
    ta, tb = agg.throughput("medflip"), agg.throughput("medclip")
    c1, c2 = agg.compare("medflip", "medclip", PRIMARY), agg.compare("medflip", "medclip", SECONDARY)
    if ta and tb and c1 and c2:
        n = min(len(agg.group("medflip")), len(agg.group("medclip")))
        worse = "worse" in (c1["verdict"], c2["verdict"])
        faster = ta["mean"] > tb["mean"]
        v = (
            f"open ({n} seed)"
            if n < 2
            else "refuted"
            if worse or not faster
            else "confirmed (no loss shown)"
            if faster
            else "not confirmed"
        )
        nums = (
            f"{ta['mean'] / tb['mean']:.2f}x the steps per minute; {PRIMARY.label}: {fmt_cmp(c1)}; "
            f"{SECONDARY.label}: {fmt_cmp(c2)}"
        )
    else:
        v, nums = "not run", "cells missing"
    rows.append(
        (
            "Masking trains faster at no loss of accuracy (Fig. 1, Table 1): MedFLIP vs MedCLIP objective",
            v,
            nums,
        )
    )
    rows.append(("The SVD loss helps (Table 3): MedFLIP vs no SVD", *_verdict_helps(agg, "medflip", "nosvd")))
    v1, n1 = _verdict_helps(agg, "textmask", "medflip")
    v2, n2 = _verdict_helps(agg, "textmask", "mae")
    v = v1 if v1 == v2 else f"{v1} vs MedFLIP, {v2} vs MAE"
    rows.append(
        (
            "Masking text and image together is best (Table 3): + text mask vs MedFLIP / + MAE recon",
            v,
            f"vs MedFLIP: {n1}. vs + MAE recon: {n2}",
        )
    )
    rows.append(
        (
            "MedFLIP is more label-efficient (Fig. 3): 1% labels, MedFLIP vs MedCLIP objective",
            *_verdict_helps(agg, "medflip", "medclip", primary=Metric("probe", "bal_acc", 0.01)),
        )
    )
    rows += _one_metric_claim(
        agg,
        "MedFLIP fine-tunes better at 10% labels (Table 1): MedFLIP vs MedCLIP objective",
        Metric("finetune", "bal_acc"),
        "fine-tune 10% balanced accuracy",
    )
    small = min(agg.cfg.pretrain_fractions, default=1.0)
    rows.append(
        (
            f"MedFLIP is more data-efficient in pre-training images ({small * 100:g}% of them)",
            *_verdict_helps(agg, "medflip", "medclip", fraction=small),
        )
    )
    rows += _one_metric_claim(
        agg,
        "MedFLIP retrieves reports better (Table 2): P@1, MedFLIP vs MedCLIP objective",
        Metric("retrieval", "p@1"),
        "P@1",
    )
    return rows


def _table(agg: Aggregate, methods: list[str], metrics: list[Metric], fraction: float = 1.0) -> list[str]:
    out = ["| method | " + " | ".join(m.label for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for me in methods:
        out.append(
            f"| {label(me)} | " + " | ".join(fmt(agg.summary(me, m, fraction)) for m in metrics) + " |"
        )
    return out


def _calibration(agg: Aggregate, methods: list[str]) -> list[str]:
    """Share of normals called pneumonia, ECE, and the val-chosen threshold applied on test."""
    out = [
        "| method | normals called pneumonia (argmax) | ECE | bal. acc. argmax | threshold chosen on val "
        "| normals called pneumonia (val threshold) | bal. acc. (val threshold) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        rs = agg.group(m)
        if not rs:
            continue
        rows = []
        for r in rs:
            yv, pv = r["zeroshot"]["val"]["y"], r["zeroshot"]["val"]["probs"][:, 1]
            yt, pt = r["zeroshot"]["test"]["y"], r["zeroshot"]["test"]["probs"]
            cand = np.unique(pv)
            bal = [
                stats.balanced_accuracy(yv, np.stack([1 - (pv >= t), pv >= t], 1).astype(float)) for t in cand
            ]
            t = float(cand[int(np.argmax(bal))])
            pt_t = np.stack([1 - (pt[:, 1] >= t), pt[:, 1] >= t], 1).astype(float)
            rows.append(
                [
                    stats.normals_called_positive(yt, pt),
                    stats.ece(yt, pt[:, 1])[0],
                    stats.balanced_accuracy(yt, pt),
                    t,
                    stats.normals_called_positive(yt, pt_t),
                    stats.balanced_accuracy(yt, pt_t),
                ]
            )
        a = np.array(rows)
        cells_ = [
            f"{a[:, j].mean():.3f}" + (f" ± {a[:, j].std(ddof=1):.3f}" if len(a) > 1 else "")
            for j in range(6)
        ]
        out.append(f"| {label(m)} ({len(a)}) | " + " | ".join(cells_) + " |")
    return out


def _speed(path: Path) -> list[str]:
    """The speed-lever checks of scripts/study_speed_checks.py, when their JSON is there."""
    if not path.is_file():
        return []
    d = json.loads(path.read_text())
    p, t = d["precision"], d["text_tower"]
    diff = max(abs(a - b) for a, b in zip(p["fp32"]["losses"], p["bf16"]["losses"], strict=False))
    return [
        "## Speed levers (measured, `scripts/study_speed_checks.py`)",
        "",
        f"- **bf16 autocast on this CPU** (AVX512-BF16): MedFLIP step (ViT-Ti/16, 128 px, batch 32, one thread) "
        f"{p['fp32']['cpu_s_per_step']:.3f} -> {p['bf16']['cpu_s_per_step']:.3f} CPU s "
        f"({p['fp32']['cpu_s_per_step'] / p['bf16']['cpu_s_per_step']:.2f}x faster); same seed and batches, the "
        f"loss of every compared step differs by at most {diff:.4f} (of ~4.6). The study trains in bf16.",
        f"- **Locked, memoised text tower**: {t['freeze_layers_6']:.4f} CPU s per step for 32 sentences, against "
        f"{t['freeze_layers_0']:.2f} s for a trainable MiniLM (forward + backward), which would double the step. "
        "All methods use it; so the text-mask arm can only perturb the text inputs (the MLM head cannot change the "
        "locked tower), and its masked sentences miss the memo (a text forward per step).",
        "",
    ] + ([f"({d['note']})", ""] if d.get("note") else [])


def _load(cfg: StudyConfig, all_cells) -> str:
    loads = [x for c in all_cells for x in _wall(cfg, c).get("load", [])]
    if not loads:
        return "load not recorded"
    return f"1-minute load average {np.median(loads):.1f} (median; {min(loads):.1f}-{max(loads):.1f}) at the end of each stage"


def _wall(cfg: StudyConfig, cell) -> dict:
    p = cell.folder(cfg) / "wall.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def write_report(cfg: StudyConfig, doc: str | Path, img: str | Path) -> Path:
    doc, img = Path(doc), Path(img)
    img.mkdir(parents=True, exist_ok=True)
    doc.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(cfg)
    agg = Aggregate(cfg, results)
    methods = [m for m in cfg.methods if agg.group(m)]
    all_cells = cells(cfg)
    status = {c.name: cell_status(cfg, c) for c in all_cells}
    done = [c for c in all_cells if status[c.name] == "done"]
    rel = lambda p: Path(p).relative_to(doc.parent) if p else None  # noqa: E731
    fig_time = figures.plot_time(agg, methods, img / "study_time.png")
    fig_lab = figures.plot_label_fractions(
        agg, methods, list(cfg.probe_fractions), img / "study_label_fraction.png"
    )
    fig_pre = figures.plot_pretrain_fractions(
        agg,
        list(cfg.pretrain_fraction_methods),
        sorted({*cfg.pretrain_fractions, 1.0}),
        img / "study_pretrain_fraction.png",
    )
    fig_rel = figures.plot_reliability(
        agg, [m for m in ("medclip", "medflip") if m in methods], img / "study_zeroshot_reliability.png"
    )
    texts = (
        json.loads((Path(cfg.out) / "texts_info.json").read_text())
        if (Path(cfg.out) / "texts_info.json").is_file()
        else {}
    )
    L: list[str] = []
    w = L.append
    w("# Reproduction study: the paper's claims at CPU scale")
    w("")
    w(
        f"Generated by `medflip study report --out {cfg.out}` from the cells' JSON results; do not edit by hand. "
        f"**{len(done)} of {len(all_cells)} cells finished** (the rest are listed at the end with the command that "
        "finishes them: the study resumes)."
    )
    w("")
    w(
        f"Machine: {_machine()}, shared with other jobs ({_load(cfg, all_cells)}). "
        f"Every run has one thread and a budget of **{cfg.budget_min:g} minutes of its own CPU time** "
        f"(`--train.budget_clock {cfg.budget_clock}`), so equal budgets stay equal however loaded the machine is; "
        "wall-clock per cell is listed below."
    )
    w("")
    w("## How to rerun")
    w("")
    w("```bash")
    w("medflip data import kermany --root ../shared/data/kermany-pneumonia --out runs/study/manifest.csv")
    w("medflip data split runs/study/manifest.csv --fractions 0.7,0.15,0.15 --seed 0 --overwrite")
    w(f"medflip data cache runs/study/manifest.csv --size 128 --out {cfg.cache}")
    w(f"medflip study run --out {cfg.out}          # every cell; rerun the same command to resume")
    w(f"medflip study report --out {cfg.out} --doc {doc} --img {img}")
    w("```")
    w("")
    w("Each cell runs two commands (also in `cells/NAME/commands.txt`), e.g. MedFLIP seed 0:")
    w("")
    w("```bash")
    ex = next((c for c in all_cells if c.method == "medflip"), all_cells[0] if all_cells else None)
    if ex is not None:
        w(command_line(pretrain_argv(cfg, ex), cfg.threads))
        w(f"OMP_NUM_THREADS={cfg.threads} medflip study eval-cell {ex.name} --out {cfg.out}")
    w("```")
    w("")
    w("## Setup")
    w("")
    w(
        f"- **Images**: Kermany paediatric pneumonia, training split (5,216 images), split patient-disjoint "
        f"70/15/15 (seed 0), cached at {cfg.image_size} px. Test and val: 783 / 784 images."
    )
    w(
        f"- **Text**: IU report sentences (decoupled, no paired report). Held out for retrieval: "
        f"{texts.get('held_out_reports', '?')} reports ({cfg.retrieval_holdout:g} of those with a Pneumonia sentence "
        f"+ as many others); pool {texts.get('pool_per_class', '?')} Pneumonia + {texts.get('pool_per_class', '?')} "
        f"No Finding sentences ({texts.get('pool_sentences_also_in_training_reports', '?')} of them also occur "
        f"verbatim in training reports: IU repeats stock phrases). Pre-training uses the other "
        f"{texts.get('train_reports', '?')} reports."
    )
    w(
        f"- **Model**: ViT-Ti/16 at {cfg.image_size} px = {(cfg.image_size // 16) ** 2} patches (mask 0.5 keeps "
        f"{(cfg.image_size // 16) ** 2 // 2}). Why this size: masking only matters where the image tower dominates "
        "the step; at 64 px (16 patches, docs/results.md) the SVD loss and the text side were a large share of "
        "the step. Patch 8 is not available (patch 16 only), so 128 px is the smallest size with >= 64 patches. "
        f"Locked, memoised all-MiniLM-L6-v2 text tower; batch {cfg.batch_size}; AdamW lr {cfg.lr:g}, "
        f"{cfg.warmup_steps} warmup steps, cosine schedule ending with the budget; {cfg.precision} autocast."
    )
    w(
        f"- **Tasks** (test split): 3-class linear probe normal / bacterial / viral (file-name subtype) on "
        f"{', '.join(f'{f * 100:g}%' for f in cfg.probe_fractions)} of the labelled train images (stratified, "
        f"seeded by the cell's seed); fine-tuning at {cfg.finetune_fraction * 100:g}% for "
        f"{', '.join(label(m) for m in cfg.finetune_methods)}; zero-shot pneumonia vs normal; image->text "
        "retrieval P@K with label relevance."
    )
    w(
        "- **Uncertainty**: `mean ± sd (seeds) [95% bootstrap CI over test images of the seed mean] (n seeds)`. "
        "A difference is called **better/worse** only when the paired bootstrap CI of the difference (same test "
        "images) excludes 0 **and** the difference exceeds twice its seed standard error (>= 2 seeds). "
        f"Primary metric for the claims: {PRIMARY.label}; secondary: {SECONDARY.label}."
    )
    w("")
    notes = Path(cfg.out) / "notes.md"
    if notes.is_file():  # the operator's notes on this run (code version, what was not merged yet, ...)
        w("## Notes on this run")
        w("")
        L.extend(notes.read_text().strip().splitlines())
        w("")
    L.extend(_speed(Path(cfg.out) / "speed_checks.json"))
    w("## Claims")
    w("")
    w("| claim of the paper | at this scale | numbers (difference [paired 95% CI] → verdict) |")
    w("|---|---|---|")
    for claim, v, nums in _claims(agg):
        w(f"| {claim} | **{v}** | {nums} |")
    w("")
    per = ", ".join(f"{label(m)} {len(agg.group(m))}" for m in cfg.methods)
    w(
        f"Seeds finished per method: {per} (the plan has {len(cfg.seeds)}). A verdict needs >= 2 seeds on both "
        f"sides; with fewer than {len(cfg.seeds)} it is provisional."
    )
    w("")
    w("## Throughput (same budget)")
    w("")
    w(f"| method | what | steps per {cfg.budget_clock}-minute | steps per seed |")
    w("|---|---|---|---|")
    for m in methods:
        t = agg.throughput(m)
        if t:
            sd = f" ± {t['sd']:.0f}" if np.isfinite(t["sd"]) else ""
            w(f"| {label(m)} | {METHODS[m][1]} | {t['mean']:.0f}{sd} | {', '.join(map(str, t['steps']))} |")
    w("")
    w("## 3-class linear probe (normal / bacterial / viral)")
    w("")
    L.extend(_table(agg, methods, [Metric("probe", "bal_acc", f) for f in cfg.probe_fractions]))
    w("")
    L.extend(_table(agg, methods, [Metric("probe", "auroc", f) for f in cfg.probe_fractions]))
    w("")
    if fig_lab:
        w(f"![probe balanced accuracy vs label fraction]({rel(fig_lab)})")
        w("")
    ft_methods = [m for m in cfg.finetune_methods if m in methods]
    if ft_methods:
        w(f"## Full fine-tuning at {cfg.finetune_fraction * 100:g}% labels")
        w("")
        L.extend(_table(agg, ft_methods, [Metric("finetune", "bal_acc"), Metric("finetune", "auroc")]))
        w("")
    w("## Zero-shot pneumonia vs normal")
    w("")
    L.extend(_table(agg, methods, [Metric("zeroshot", k) for k in ("accuracy", "macro_f1", "auroc")]))
    w("")
    w("## Image -> text retrieval (held-out IU sentences, Pneumonia / No Finding, equal counts)")
    w("")
    L.extend(_table(agg, methods, [Metric("retrieval", f"p@{k}") for k in (1, 2, 5, 10)]))
    w("")
    w("## Training time")
    w("")
    if fig_time:
        w(f"![metric vs training time]({rel(fig_time)})")
        w("")
    w("## Data efficiency: fraction of pre-training images (same budget)")
    w("")
    for m in cfg.pretrain_fraction_methods:
        w(f"**{label(m)}**")
        w("")
        w("| pre-training images | " + PRIMARY.label + " | " + SECONDARY.label + " |")
        w("|---|---|---|")
        for f in sorted({*cfg.pretrain_fractions, 1.0}):
            w(f"| {f * 100:g}% | {fmt(agg.summary(m, PRIMARY, f))} | {fmt(agg.summary(m, SECONDARY, f))} |")
        w("")
    if fig_pre:
        w(f"![metric vs pre-training images]({rel(fig_pre)})")
        w("")
    w("## Zero-shot calibration (test split)")
    w("")
    w(
        "How the decision threshold sits: the share of normal images the zero-shot argmax calls pneumonia, the "
        "expected calibration error of the softmax P(pneumonia), and a fix chosen on val only: the threshold on "
        "P(pneumonia) that maximises balanced accuracy on val, applied unchanged on test (it uses val labels, so it "
        "is calibrated zero-shot, not pure zero-shot). Mean ± sd over seeds."
    )
    w("")
    L.extend(_calibration(agg, methods))
    w("")
    if fig_rel:
        w(f"![zero-shot reliability]({rel(fig_rel)})")
        w("")
    w("## Per-cell time")
    w("")
    w(
        "| cell | steps | training clock s | evaluation CPU s | wall-clock s (pre-train + eval, loaded machine) |"
    )
    w("|---|---|---|---|---|")
    for c in done:
        r = results.get(c.name)
        if r is None:
            continue
        wall = _wall(cfg, c)
        wtot = wall.get("pretrain_wall_s", 0.0) + wall.get("eval_wall_s", 0.0) if wall else float("nan")
        w(
            f"| {c.name} | {r['train']['steps']} | {r['train']['elapsed_s']:.0f} | {r['eval_cpu_s']:.0f} | {wtot:.0f} |"
        )
    w("")
    missing = [c for c in all_cells if status[c.name] != "done"]
    w("## Not yet run")
    w("")
    if missing:
        w(f"{len(missing)} cells: " + ", ".join(f"`{c.name}` ({status[c.name]})" for c in missing) + ".")
        w("")
        w(
            f"Finish them (finished cells are skipped): `medflip study run --out {cfg.out}` then "
            f"`medflip study report --out {cfg.out}`."
        )
    else:
        w("Nothing: every cell of the plan finished.")
    w("")
    w("## At the paper's scale")
    w("")
    w(
        "The paper pre-trains ViT-B/16 at 224 px on MIMIC-CXR (~377k images, 227k reports, paired) and evaluates "
        "on CheXpert-5x200, RSNA pneumonia and COVID. The same study there (7 methods x 3 seeds + 6 data-fraction "
        "cells x 3 seeds = 39 runs; at 2 GPU-hours each on one H100-class GPU in bf16 that is about 80 GPU-hours, "
        "plus a few hours of evaluation) needs MIMIC-CXR (credentialed PhysioNet access) imported with "
        "`medflip data import mimic`, cached at 224 px:"
    )
    w("")
    w("```bash")
    w(
        "medflip study run --out runs/study_mimic --cache mimic_cache224 --texts mimic_reports.csv --image_size 224 "
        "--vision_size base --batch_size 256 --budget_min 120 --budget_clock wall --precision bf16 --device cuda "
        "--jobs 1 --threads 8 --text_freeze_layers 0 --probe_column labels "
        "--probe_classes Atelectasis,Cardiomegaly,Consolidation,Edema,'Pleural Effusion'"
    )
    w("```")
    w("")
    w(
        "(The study trains decoupled: `--texts` is a report file from which it holds out the retrieval pool; "
        "paired MIMIC training inside the study is not built yet. The 3-class probe becomes a CheXpert-5 probe "
        "through `--probe_column labels` (images with exactly one of the five positive, as in CheXpert-5x200) and "
        "`--probe_classes`. Runs on a small MIMIC-layout fixture in CI; untested at that scale.)"
    )
    doc.write_text("\n".join(L) + "\n")
    return doc

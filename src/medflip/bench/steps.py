"""`medflip bench`: time full training steps at several mask ratios and compare with the FLOPs ceiling.

A step is what training does: forward of both towers, all loss terms (SVD included), backward, AdamW.
Inputs are synthetic tensors (random pixels, random token ids of a report-sentence length), so the
benchmark needs no data. The model, loss and precision come from a PretrainConfig (`--config FILE`, e.g. a
run's config.json, and `--section.key` flags, as for `medflip pretrain`).
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import time
from dataclasses import dataclass

import torch

from medflip.bench.flops import ceiling_speedup, pair_forward_flops, peak_tflops
from medflip.data.streams import Batch
from medflip.losses import MedFLIPObjective, soft_targets, svd_loss
from medflip.model.medflip import MedFLIP
from medflip.runtime import autocast_context, resolve_device
from medflip.train.config import PretrainConfig
from medflip.train.loop import build_optimizer
from medflip.train.step import TrainingForward, train_step_losses


@dataclass
class BenchConfig:
    """What to time besides the PretrainConfig (which gives the model, loss, batch size, device, precision)."""

    text_tokens: int = 32  # a report sentence with [CLS]/[SEP] is ~15-35 tokens
    ratios: tuple[float, ...] = (0.0, 0.5, 0.75)
    steps: int = 5
    warmup: int = 2
    svd_batch: int = 256  # also state the SVD loss cost at this batch size


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def run_bench(cfg: BenchConfig, pretrain_cfg: PretrainConfig | None = None, progress: bool = True) -> dict:
    """Time training steps of `pretrain_cfg` (default: PretrainConfig's defaults, ViT-S/16 at 224 px, batch 32)
    at each of cfg.ratios; rows of pairs/s, speedup vs ratio 0, FLOPs ceiling, peak memory, shares."""
    pc = (pretrain_cfg or PretrainConfig()).resolved()  # resolved: the heads its loss weights need exist
    device = resolve_device(pc.train.device)
    size = pc.model.vision.image_size
    model = MedFLIP(pc.model).to(device).train()
    optimizer = build_optimizer(model, pc.optim)
    forward, objective = TrainingForward(model), MedFLIPObjective(pc.loss)
    g = torch.Generator().manual_seed(0)
    b = pc.data.batch_size
    images = torch.randn(b, 1, size, size, generator=g).to(device)
    labels = (torch.rand(b, 14, generator=g) < 0.2).float()
    # Random words of the tokenizer's vocabulary -> texts of exactly `text_tokens` tokens.
    vocab = [w for w in model.tokenizer.get_vocab() if w.isalpha() and len(w) > 3][:5000]
    texts = [
        " ".join(vocab[int(i)] for i in torch.randint(len(vocab), (cfg.text_tokens - 2,), generator=g))
        for _ in range(b)
    ]
    batch = Batch(
        images=images, image_labels=labels, texts=texts, text_labels=labels.flip(0), image_index=None
    )

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, steps: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        return (time.perf_counter() - t) / steps

    def train_step(ratio: float):
        result = train_step_losses(forward, objective, batch, pc, ratio, step=0)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()

    # Most-masked first: on CPU the peak-RSS high-water mark then reads each ratio's own peak.
    rows = {}
    for ratio in sorted(cfg.ratios, reverse=True):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sec = timed(lambda ratio=ratio: train_step(ratio), cfg.steps, cfg.warmup)
        rows[ratio] = {
            "mask_ratio": ratio,
            "step_s": sec,
            "pairs_per_s": b / sec,
            "peak_mem_mb": _peak_mb(device),
        }
        if progress:
            print(f"  mask {ratio:.2f}: {sec:.3f} s/step", file=sys.stderr)

    # Shares: the text tower (forward+backward) and the SVD loss (forward+backward) timed alone.
    enc = {k: v.to(device) for k, v in model.tokenize(texts).items()}

    def text_only():
        with autocast_context(device, pc.train.precision):
            pooled, _ = model.text(enc["input_ids"], enc["attention_mask"])
        pooled.float().sum().backward()

    text_s = timed(text_only, cfg.steps, 1)
    visible = math.floor(model.vision.num_patches * 0.5)
    svd_s = {}
    for n in (b, cfg.svd_batch):
        p = torch.nn.functional.normalize(
            torch.randn(n, visible, pc.model.embed_dim, device=device), dim=-1
        ).requires_grad_()
        t = torch.nn.functional.normalize(
            torch.randn(n, cfg.text_tokens, pc.model.embed_dim, device=device), dim=-1
        ).requires_grad_()
        m = torch.ones(n, cfg.text_tokens, device=device)
        lab = (torch.rand(n, 14, generator=g) < 0.2).float().to(device)
        _, y, yt = soft_targets(lab, lab, pc.loss.tau_s)
        svd_s[n] = timed(
            lambda p=p, t=t, m=m, y=y, yt=yt: svd_loss(p, t, m, y, yt).backward(),
            2 if n > b else cfg.steps,
            1,
        )

    vit = model.vision.vit
    text_cfg = model.text.model.config
    base = rows[min(rows)]["step_s"] if 0.0 in rows else None
    peak = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    out_rows = []
    for ratio in sorted(rows):
        r = rows[ratio]
        ceiling = ceiling_speedup(
            model.vision.num_patches,
            model.vision.width,
            len(vit.blocks),
            16 * 16 * pc.model.vision.in_chans,
            cfg.text_tokens,
            text_cfg.hidden_size,
            text_cfg.num_hidden_layers,
            ratio,
        )
        speedup = base / r["step_s"] if base else float("nan")
        flops = 3 * pair_forward_flops(
            model.vision.num_patches,
            model.vision.width,
            len(vit.blocks),
            16 * 16 * pc.model.vision.in_chans,
            cfg.text_tokens,
            text_cfg.hidden_size,
            text_cfg.num_hidden_layers,
            ratio,
        )
        achieved = flops * r["pairs_per_s"] / 1e12  # model TFLOP/s (training ~ 3x forward)
        out_rows.append(
            {
                **{k: round(v, 4) for k, v in r.items()},
                "speedup": round(speedup, 3),
                "ceiling": round(ceiling, 3),
                "of_ceiling": round(speedup / ceiling, 3),
                "text_share": round(text_s / r["step_s"], 4),
                "svd_share": round(svd_s[b] / r["step_s"], 4),
                "model_tflops": round(achieved, 3),
                "mfu": round(achieved / peak, 4) if peak else None,
            }
        )
    return {
        "rows": out_rows,
        "config": {**cfg.__dict__, "ratios": list(cfg.ratios)},
        "pretrain_config": dataclasses.asdict(pc),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "text_step_s": round(text_s, 4),
        "svd_s": {str(k): round(v, 4) for k, v in svd_s.items()},
        "peak_mem_note": "CUDA: max allocated per ratio; CPU: process peak RSS (runs most-masked first)",
    }


def format_table(result: dict) -> str:
    head = (
        "| mask ratio | pairs/s | speedup | FLOPs ceiling | of ceiling | peak mem (MB) | text share | SVD share "
        "| model TFLOP/s | MFU |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        lines.append(
            f"| {r['mask_ratio']:.2f} | {r['pairs_per_s']:.2f} | {r['speedup']:.2f}x | {r['ceiling']:.2f}x | "
            f"{r['of_ceiling']:.2f} | {r['peak_mem_mb']:.0f} | {100 * r['text_share']:.1f}% | {100 * r['svd_share']:.2f}% "
            f"| {r.get('model_tflops', 0):.2f} | {mfu} |"
        )
    svd = result["svd_s"]
    lines.append("")
    lines.append(
        "SVD loss (forward+backward, visible patches at mask 0.5): "
        + ", ".join(f"batch {k}: {1000 * v:.1f} ms" for k, v in svd.items())
    )
    return "\n".join(lines)

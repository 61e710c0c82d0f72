"""`medflip bench`: time full training steps at several mask ratios and compare with the FLOPs ceiling.

A step is what training does: forward of both towers, all loss terms (SVD included), backward, AdamW.
Inputs are synthetic tensors (random pixels, random token ids of a report-sentence length), so the
benchmark needs no data. The analytic ceiling counts matmul FLOPs of both towers (attention included,
the image tower at its visible-token count, the text tower unmasked); real speedups fall short of it by
the unmasked overheads (patch embedding, optimizer, heads, loss, Python).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchConfig:
    vit: str = "small"
    image_size: int = 224
    batch_size: int = 32
    text_tokens: int = 32  # a report sentence with [CLS]/[SEP] is ~15-35 tokens
    ratios: tuple[float, ...] = (0.0, 0.5, 0.75)
    steps: int = 5
    warmup: int = 2
    svd_batch: int = 256  # also state the SVD loss cost at this batch size
    device: str = "auto"
    precision: str = "auto"


def transformer_flops(tokens: int, width: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward matmul FLOPs of `depth` pre-norm blocks on one sequence (2 FLOPs per multiply-add).

    Per block: qkv 6 n D^2, output projection 2 n D^2, MLP 4 r n D^2, attention scores + weighted sum 4 n^2 D.
    """
    n, d = tokens, width
    return depth * ((8 + 4 * mlp_ratio) * n * d * d + 4 * n * n * d)


def ceiling_speedup(
    num_patches: int,
    vit_width: int,
    vit_depth: int,
    patch_dim: int,
    text_tokens: int,
    text_width: int,
    text_depth: int,
    ratio: float,
) -> float:
    """FLOPs(step at ratio 0) / FLOPs(step at ratio); training ~ 3x forward for both towers alike."""

    def step_flops(r: float) -> float:
        visible = math.floor(num_patches * (1 - r)) + 1  # + class token
        patch_embed = 2 * num_patches * patch_dim * vit_width  # runs before masking
        image = patch_embed + transformer_flops(visible, vit_width, vit_depth)
        text = transformer_flops(text_tokens, text_width, text_depth)
        return image + text

    return step_flops(0.0) / step_flops(ratio)


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    import torch

    from medflip.data.streams import Batch
    from medflip.losses import MedFLIPObjective, soft_targets, svd_loss
    from medflip.model.medflip import MedFLIP, ModelConfig
    from medflip.model.vision import VisionConfig
    from medflip.runtime import autocast_context, resolve_device
    from medflip.train.config import PretrainConfig
    from medflip.train.loop import build_optimizer
    from medflip.train.step import TrainingForward, train_step_losses

    device = resolve_device(cfg.device)
    pc = PretrainConfig(model=ModelConfig(vision=VisionConfig(size=cfg.vit, image_size=cfg.image_size)))
    pc.train.precision = cfg.precision
    model = MedFLIP(pc.model).to(device).train()
    optimizer = build_optimizer(model, pc.optim)
    forward, objective = TrainingForward(model), MedFLIPObjective(pc.loss)
    g = torch.Generator().manual_seed(0)
    b = cfg.batch_size
    images = torch.randn(b, 1, cfg.image_size, cfg.image_size, generator=g).to(device)
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
        out_rows.append(
            {
                **{k: round(v, 4) for k, v in r.items()},
                "speedup": round(speedup, 3),
                "ceiling": round(ceiling, 3),
                "of_ceiling": round(speedup / ceiling, 3),
                "text_share": round(text_s / r["step_s"], 4),
                "svd_share": round(svd_s[b] / r["step_s"], 4),
            }
        )
    return {
        "rows": out_rows,
        "config": {**cfg.__dict__, "ratios": list(cfg.ratios)},
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "text_step_s": round(text_s, 4),
        "svd_s": {str(k): round(v, 4) for k, v in svd_s.items()},
        "peak_mem_note": "CUDA: max allocated per ratio; CPU: process peak RSS (runs most-masked first)",
    }


def format_table(result: dict) -> str:
    head = "| mask ratio | pairs/s | speedup | FLOPs ceiling | of ceiling | peak mem (MB) | text share | SVD share |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['mask_ratio']:.2f} | {r['pairs_per_s']:.2f} | {r['speedup']:.2f}x | {r['ceiling']:.2f}x | "
            f"{r['of_ceiling']:.2f} | {r['peak_mem_mb']:.0f} | {100 * r['text_share']:.1f}% | {100 * r['svd_share']:.2f}% |"
        )
    svd = result["svd_s"]
    lines.append("")
    lines.append(
        "SVD loss (forward+backward, visible patches at mask 0.5): "
        + ", ".join(f"batch {k}: {1000 * v:.1f} ms" for k, v in svd.items())
    )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time training steps at mask ratios 0 / 0.5 / 0.75 vs the FLOPs ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = BenchConfig()
    p.add_argument("--vit", default=d.vit, choices=["tiny", "small", "base"])
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--text-tokens", type=int, default=d.text_tokens)
    p.add_argument(
        "--ratios",
        default=",".join(map(str, d.ratios)),
        help="comma-separated mask ratios (0 is the baseline)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per ratio")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--svd-batch", type=int, default=d.svd_batch)
    p.add_argument("--device", default=d.device)
    p.add_argument("--precision", default=d.precision, choices=["auto", "bf16", "fp32"])
    p.add_argument("--json", type=Path, help="write the results here")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = BenchConfig(
        vit=args.vit,
        image_size=args.image_size,
        batch_size=args.batch_size,
        text_tokens=args.text_tokens,
        ratios=tuple(float(r) for r in args.ratios.split(",")),
        steps=args.steps,
        warmup=args.warmup,
        svd_batch=args.svd_batch,
        device=args.device,
        precision=args.precision,
    )
    result = run_bench(cfg)
    print(
        f"medflip bench: ViT-{cfg.vit[0].upper()}/16 at {cfg.image_size}px, batch {cfg.batch_size}, "
        f"{cfg.text_tokens} text tokens, device {result['device']}"
    )
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0

"""`medflip bench`: time full training steps at several mask ratios and compare with the FLOPs ceiling.

A step is what training does: forward of both towers, all loss terms (SVD included), backward, AdamW.
Inputs are synthetic tensors (random pixels, random token ids of a report-sentence length), so the
benchmark needs no data. The analytic ceiling counts matmul FLOPs of both towers (attention included,
the image tower at its visible-token count, the text tower unmasked); real speedups fall short of it by
the unmasked overheads (patch embedding, optimizer, heads, loss, Python).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchConfig:
    """What to time. The model, loss and precision come from a PretrainConfig: `config` (a YAML/JSON file, e.g.
    a run's config.json) or PretrainConfig's defaults (ViT-S/16 at 224 px, batch 32), overridden by the fields
    below that are set (None: keep the config's value)."""

    config: str = ""
    vit: str | None = None  # model.vision.size
    image_size: int | None = None  # model.vision.image_size
    batch_size: int | None = None  # data.batch_size
    device: str | None = None  # train.device
    precision: str | None = None  # train.precision
    text_tokens: int = 32  # a report sentence with [CLS]/[SEP] is ~15-35 tokens
    ratios: tuple[float, ...] = (0.0, 0.5, 0.75)
    steps: int = 5
    warmup: int = 2
    svd_batch: int = 256  # also state the SVD loss cost at this batch size

    def pretrain_config(self):
        """The PretrainConfig this benchmark times (resolved: the heads its loss weights need exist)."""
        from medflip.config import load_config
        from medflip.train.config import PretrainConfig

        keys = {
            "model.vision.size": self.vit,
            "model.vision.image_size": self.image_size,
            "data.batch_size": self.batch_size,
            "train.device": self.device,
            "train.precision": self.precision,
        }
        overrides = {k: v for k, v in keys.items() if v is not None}
        return load_config(PretrainConfig, self.config or None, overrides).resolved()


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
    args = (num_patches, vit_width, vit_depth, patch_dim, text_tokens, text_width, text_depth)
    return pair_forward_flops(*args, 0.0) / pair_forward_flops(*args, ratio)


def pair_forward_flops(
    num_patches: int,
    vit_width: int,
    vit_depth: int,
    patch_dim: int,
    text_tokens: int,
    text_width: int,
    text_depth: int,
    ratio: float,
) -> float:
    """Forward matmul FLOPs of both towers for one image-text pair at mask `ratio` (losses and heads not counted)."""
    visible = math.floor(num_patches * (1 - ratio)) + 1  # + class token
    patch_embed = 2 * num_patches * patch_dim * vit_width  # runs before masking
    image = patch_embed + transformer_flops(visible, vit_width, vit_depth)
    return image + transformer_flops(text_tokens, text_width, text_depth)


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) for model-FLOPs utilisation; matched in the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


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
    from medflip.model.medflip import MedFLIP
    from medflip.runtime import autocast_context, resolve_device
    from medflip.train.loop import build_optimizer
    from medflip.train.step import TrainingForward, train_step_losses

    pc = cfg.pretrain_config()
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


@dataclass
class ObjectiveBenchConfig:
    batches: tuple[int, ...] = (256, 1024, 4096)  # global batch sizes
    worlds: tuple[int, ...] = (1, 2, 8)  # simulated world sizes
    visible: int = 98  # image tokens per sample: ViT-S/16 at 224 px, mask 0.5 (196 patches)
    text_tokens: int = 32
    embed_dim: int = 512
    repeats: int = 2
    device: str = "auto"


def run_objective_bench(cfg: ObjectiveBenchConfig, progress: bool = True) -> dict:
    """Forward + backward time of the whole objective (L_sm, L_neg, L_svd) for ONE rank of each world size.

    Rank r's features are random unit vectors; the other ranks' shares come from `SimulatedWorld`
    (copies without gradient), so the process does exactly one real rank's arithmetic, communication aside.
    """
    import torch
    import torch.nn.functional as F

    from medflip.losses import LossConfig, MedFLIPObjective, SimulatedWorld
    from medflip.runtime import resolve_device

    device = resolve_device(cfg.device)
    rows = []
    for big_n in cfg.batches:
        for world in cfg.worlds:
            if big_n % world:
                continue
            n = big_n // world
            g = torch.Generator().manual_seed(0)

            def unit(*shape, g=g):
                return F.normalize(torch.randn(*shape, generator=g), dim=-1).to(device).requires_grad_()

            feats = [unit(n, cfg.embed_dim), unit(n, cfg.embed_dim)]
            feats += [unit(n, cfg.visible, cfg.embed_dim), unit(n, cfg.text_tokens, cfg.embed_dim)]
            labels = [(torch.rand(n, 14, generator=g) < 0.2).float().to(device) for _ in range(2)]
            out = types.SimpleNamespace(
                image_embeds=feats[0],
                text_embeds=feats[1],
                image_tokens=feats[2],
                text_tokens=feats[3],
                text_mask=torch.ones(n, cfg.text_tokens, device=device),
                logit_scale=torch.tensor(math.log(1 / 0.07), device=device),
                ids_keep=None,
            )
            for local in (False, True):
                objective = MedFLIPObjective(LossConfig(local_loss=local), SimulatedWorld(0, world))

                def step(objective=objective, out=out, labels=labels, feats=feats):
                    objective(out, *labels).loss.backward()
                    for f in feats:
                        f.grad = None

                try:
                    sec, cpu = _timed(step, cfg.repeats, 1, device, cpu_time=True)
                except torch.OutOfMemoryError:
                    sec = cpu = float("nan")
                    torch.cuda.empty_cache()
                # On the CPU, process CPU time: wall-clock on a shared machine measures the neighbours.
                if device.type == "cpu":
                    sec = cpu
                rows.append({"global_batch": big_n, "world": world, "local_loss": local, "seconds": sec})
                if progress:
                    mode = "local" if local else "global"
                    print(f"  batch {big_n}, world {world}, {mode} loss: {sec:.4f} s", file=sys.stderr)
    for r in rows:  # per-rank cost relative to one process holding the whole global batch
        base = (
            next(
                b["seconds"]
                for b in rows
                if b["global_batch"] == r["global_batch"]
                and b["world"] == 1
                and b["local_loss"] == r["local_loss"]
            )
            if 1 in cfg.worlds
            else float("nan")
        )
        r["of_world1"] = r["seconds"] / base if base == base and base > 0 else float("nan")
    return {
        "rows": rows,
        "config": {**cfg.__dict__, "batches": list(cfg.batches), "worlds": list(cfg.worlds)},
        "device": _device_name(device),
    }


def _timed(fn, steps: int, warmup: int, device, cpu_time: bool = False):
    """Mean seconds per call (and, with cpu_time, also the mean process CPU seconds)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    sync()
    wall, cpu = (time.perf_counter() - t) / steps, (time.process_time() - c) / steps
    return (wall, cpu) if cpu_time else wall


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def format_objective_table(result: dict) -> str:
    lines = [
        "| global batch | world | per-rank rows | global loss (s) | of world 1 | local loss (s) | of world 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    cells = {(r["global_batch"], r["world"], r["local_loss"]): r for r in result["rows"]}
    for big_n, world, _ in sorted(k for k in cells if not k[2]):
        g, loc = cells[(big_n, world, False)], cells[(big_n, world, True)]
        lines.append(
            f"| {big_n} | {world} | {big_n // world} | {g['seconds']:.4f} | {g['of_world1']:.3f} | "
            f"{loc['seconds']:.4f} | {loc['of_world1']:.3f} |"
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
    p.add_argument(
        "--config",
        default="",
        help="a pretrain config (YAML/JSON, e.g. a run's config.json): the model, loss and precision to time; "
        "default: PretrainConfig's defaults (ViT-S/16 at 224 px, batch 32)",
    )
    p.add_argument("--vit", choices=["tiny", "small", "base"], help="overrides model.vision.size")
    p.add_argument("--image-size", type=int, help="overrides model.vision.image_size")
    p.add_argument("--batch-size", type=int, help="overrides data.batch_size")
    p.add_argument("--text-tokens", type=int, default=d.text_tokens)
    p.add_argument(
        "--ratios",
        default=",".join(map(str, d.ratios)),
        help="comma-separated mask ratios (0 is the baseline)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per ratio")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--svd-batch", type=int, default=d.svd_batch)
    p.add_argument("--device", help="overrides train.device (auto: CUDA, else MPS, else CPU)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="overrides train.precision")
    p.add_argument("--json", type=Path, help="write the results here")
    o = p.add_argument_group(
        "objective benchmark (--objective): per-rank forward+backward time of the whole loss for simulated "
        "world sizes (one process computes one rank's rows), with and without local loss"
    )
    od = ObjectiveBenchConfig()
    o.add_argument("--objective", action="store_true", help="run the objective benchmark instead")
    o.add_argument("--global-batches", default=",".join(map(str, od.batches)), help="comma-separated")
    o.add_argument("--worlds", default=",".join(map(str, od.worlds)), help="comma-separated world sizes")
    o.add_argument(
        "--visible", type=int, default=od.visible, help="image tokens per sample (98: ViT-S/16, mask 0.5)"
    )
    o.add_argument("--embed-dim", type=int, default=od.embed_dim)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.objective:
        ocfg = ObjectiveBenchConfig(
            batches=tuple(int(b) for b in args.global_batches.split(",")),
            worlds=tuple(int(w) for w in args.worlds.split(",")),
            visible=args.visible,
            text_tokens=args.text_tokens,
            embed_dim=args.embed_dim,
            repeats=args.steps,
            device=args.device or "auto",
        )
        result = run_objective_bench(ocfg)
        print(
            f"medflip bench --objective: {ocfg.visible} image tokens, {ocfg.text_tokens} text tokens, "
            f"embed dim {ocfg.embed_dim}, fp32 loss, device {result['device']}; seconds per rank per step "
            + ("(process CPU time)" if result["device"].startswith("cpu") else "(wall-clock)")
        )
        print(format_objective_table(result))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    cfg = BenchConfig(
        config=args.config,
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
    pc = result["pretrain_config"]
    print(
        f"medflip bench: ViT-{pc['model']['vision']['size'][0].upper()}/16 at {pc['model']['vision']['image_size']}px, "
        f"batch {pc['data']['batch_size']}, {cfg.text_tokens} text tokens, device {result['device']}"
    )
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0

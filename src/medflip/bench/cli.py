"""`medflip bench` (and `medflip bench --objective`): the command. What to time comes from a PretrainConfig,
through the same `--config FILE` / `--section.key VALUE` flags as `medflip pretrain`; the benchmark's own
options (ratios, steps, ...) are plain flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medflip.bench.objective import ObjectiveBenchConfig, format_objective_table, run_objective_bench
from medflip.bench.steps import BenchConfig, format_table, run_bench
from medflip.bench.steps import __doc__ as DOC
from medflip.config import add_config_flags, config_from_args
from medflip.train.config import PretrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time training steps at mask ratios 0 / 0.5 / 0.75 vs the FLOPs ceiling",
        description=DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = BenchConfig()
    p.add_argument("--text-tokens", type=int, default=d.text_tokens)
    p.add_argument(
        "--ratios",
        default=",".join(map(str, d.ratios)),
        help="comma-separated mask ratios (0 is the baseline)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per ratio")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--svd-batch", type=int, default=d.svd_batch)
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
    # What to time: a PretrainConfig, e.g. `--config runs/x/config.json --model.vision.size base
    # --data.batch_size 256 --train.precision bf16` (--train.device also places the objective benchmark).
    add_config_flags(p, PretrainConfig)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    pc = config_from_args(PretrainConfig, args)
    if args.objective:
        ocfg = ObjectiveBenchConfig(
            batches=tuple(int(b) for b in args.global_batches.split(",")),
            worlds=tuple(int(w) for w in args.worlds.split(",")),
            visible=args.visible,
            text_tokens=args.text_tokens,
            embed_dim=args.embed_dim,
            repeats=args.steps,
            device=pc.train.device,
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
        text_tokens=args.text_tokens,
        ratios=tuple(float(r) for r in args.ratios.split(",")),
        steps=args.steps,
        warmup=args.warmup,
        svd_batch=args.svd_batch,
    )
    result = run_bench(cfg, pc)
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

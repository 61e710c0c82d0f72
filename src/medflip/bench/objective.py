"""`medflip bench --objective`: per-rank forward + backward time of the whole objective for simulated world
sizes (one process computes one rank's rows), with and without local loss."""

from __future__ import annotations

import math
import sys
import time
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medflip.losses import LossConfig, MedFLIPObjective, SimulatedWorld
from medflip.runtime import resolve_device


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

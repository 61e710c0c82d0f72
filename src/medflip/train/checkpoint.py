"""Step-exact training checkpoints, written atomically.

    run/checkpoints/step_00000500/
        config.json, model.safetensors, text/   the model (MedFLIP.save_pretrained)
        trainer.pt                              optimizer + scheduler state, torch RNG states
        state.json                              step, wall-clock so far, run config
    run/checkpoints/latest                      name of the newest complete checkpoint

A checkpoint is built in a temporary folder and renamed into place, so a crash mid-write never leaves
a half checkpoint where `--resume` would find it. trainer.pt holds only tensors and plain containers
and is read with `torch.load(weights_only=True)`: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from medflip.errors import UserError


def save_checkpoint(
    run_dir: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int = 0
) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    trainer = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(trainer, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = ckpt_root / ".latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, ckpt_root / "latest")
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if pointer.is_file():
        path = pointer.parent / pointer.read_text().strip()
        if (path / "state.json").is_file():
            return path
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; returns state.json's contents."""
    try:
        trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, RuntimeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot resume from {ckpt}: {e}") from e
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    if trainer["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    return state

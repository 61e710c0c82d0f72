"""Step-exact training checkpoints: safetensors + JSON only, written atomically.

    run/checkpoints/step_00000500/
        config.json, model.safetensors, text/   the model (MedFLIP.save_pretrained)
        trainer.safetensors                     optimizer moments, torch RNG states (tensors)
        trainer.json                            optimizer param groups, scheduler state, tensor index
        state.json                              format, step, wall-clock so far, run config
    run/checkpoints/latest                      name of the newest complete checkpoint

Nothing in a checkpoint needs an unpickler: tensors are safetensors, everything else is JSON (Python
floats round-trip through JSON exactly, so a resumed run is bit-identical).

Crash safety: a checkpoint is written into `.tmp_step_N/`, every file fsynced, then renamed to
`step_N/` in one `os.replace`, and only then does `latest` (itself written to a temporary file and
renamed) point at it. A kill at any moment leaves either the old state or the new one; a leftover
`.tmp_*` folder is never read and is removed by the next save. A write error (disk full) removes the
partial folder and raises a UserError; the previous checkpoint and `latest` are untouched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medflip.errors import UserError
from medflip.model.medflip import WEIGHTS_NAME, read_model_config

FORMAT = "medflip-checkpoint/2"
READABLE_FORMATS = ("medflip-checkpoint/1", FORMAT)  # /1: trainer.pt (read with weights_only=True)
TRAINER_TENSORS, TRAINER_JSON, STATE = "trainer.safetensors", "trainer.json", "state.json"


class CheckpointError(UserError):
    """A checkpoint cannot be written or read; the message says which and what to do."""


# ---------------------------------------------------------------- state <-> (tensors, JSON)
def _split_tensors(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor inside nested dicts/lists by {"__tensor__": key}; collect them in `tensors`."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _optimizer_state_from_json(sd: dict) -> dict:
    """JSON turned the optimizer's integer parameter ids into strings; turn them back."""
    return {"state": {int(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


# ---------------------------------------------------------------- writing
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems / platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(
    run_dir: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int = 0
) -> Path:
    """Write checkpoint `step` of the run (see the module docstring); returns its folder."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".tmp_step_{step:08d}"
    for stale in ckpt_root.glob(".tmp_step_*"):  # left by a crash: never complete, never read
        shutil.rmtree(stale, ignore_errors=True)
    renamed = False
    try:
        model.save_pretrained(tmp)
        tensors: dict[str, torch.Tensor] = {}
        trainer = {
            "optimizer": _split_tensors(optimizer.state_dict(), tensors, "optimizer"),
            "scheduler": _split_tensors(scheduler.state_dict(), tensors, "scheduler"),
            "torch_rng": _split_tensors(torch.get_rng_state(), tensors, "torch_rng"),
            "cuda_rng": _split_tensors(
                torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], tensors, "cuda_rng"
            ),
        }
        save_file(tensors, str(tmp / TRAINER_TENSORS), metadata={"format": FORMAT})
        (tmp / TRAINER_JSON).write_text(json.dumps(trainer, indent=1))
        (tmp / STATE).write_text(json.dumps({"format": FORMAT, **state, "step": step}, indent=2))
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        _fsync_dir(tmp)
        if final.exists():  # the same step written by an abandoned continuation of this run
            shutil.rmtree(final)
        os.replace(tmp, final)
        renamed = True
        _fsync_dir(ckpt_root)
        write_text_atomic(ckpt_root / "latest", final.name)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if renamed:  # complete but not named by `latest`: remove it, so the run's history stays linear
            shutil.rmtree(final, ignore_errors=True)
        prev = latest_checkpoint(run_dir)
        raise CheckpointError(
            f"cannot write checkpoint step {step} to {ckpt_root}: {e.strerror or e}; nothing half-written "
            f"was kept; "
            + (f"the last good checkpoint is {prev}" if prev else "no earlier checkpoint exists")
            + " (free some space and rerun with --resume)"
        ) from e
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------- finding
def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / STATE).is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if pointer.is_file():
        path = pointer.parent / pointer.read_text().strip()
        if (path / STATE).is_file():
            return path
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# ---------------------------------------------------------------- reading
def read_state(ckpt: Path) -> dict[str, Any]:
    """state.json of a checkpoint, validated (format, step)."""
    path = Path(ckpt) / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt} is not a readable checkpoint ({path}: {e})") from e
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path} has no integer 'step': not a medflip checkpoint")
    fmt = state.get("format", "medflip-checkpoint/1")
    if fmt not in READABLE_FORMATS:
        raise CheckpointError(
            f"{ckpt} was written in format {fmt!r} (a newer medflip?); this medflip reads {READABLE_FORMATS}"
        )
    return state


def load_model_state(ckpt: Path, model: torch.nn.Module) -> None:
    """Load a checkpoint's model.safetensors into `model`, strictly: every key, every shape, finite values.

    Errors name the offending tensors (a checkpoint of another model size, a truncated file, a run
    that diverged before the checkpoint was written).
    """
    ckpt = Path(ckpt)
    try:
        read_model_config(ckpt)
        state = load_file(str(ckpt / WEIGHTS_NAME))
    except (OSError, SafetensorError, UserError) as e:
        raise CheckpointError(f"cannot read the model weights of {ckpt}: {e}") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors ({', '.join(missing[:4])})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensors ({', '.join(extra[:4])})")
    if shapes:
        problems.append(f"wrong shapes: {'; '.join(shapes[:4])}")
    if problems:
        raise CheckpointError(
            f"{ckpt} does not fit this model config: {'; '.join(problems)}. "
            "Resume with the config the run was started with."
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{ckpt} holds non-finite weights ({', '.join(bad[:4])}); resume from an earlier checkpoint "
            "(--resume PATH)"
        )
    model.load_state_dict(state, strict=True)


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; returns state.json's contents."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    try:
        if (ckpt / TRAINER_JSON).is_file():
            trainer = _join_tensors(
                json.loads((ckpt / TRAINER_JSON).read_text()), load_file(str(ckpt / TRAINER_TENSORS))
            )
            trainer["optimizer"] = _optimizer_state_from_json(trainer["optimizer"])
        else:  # format 1; torch's restricted loader: tensors and plain containers only, nothing executed
            trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
    except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the user
        raise CheckpointError(
            f"cannot resume from {ckpt}: optimizer/scheduler state unreadable or of another model "
            f"({type(e).__name__}: {e})"
        ) from e
    for group in optimizer.state.values():
        for k, v in group.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all():
                raise CheckpointError(f"{ckpt}: optimizer state {k!r} holds non-finite values")
    torch.set_rng_state(trainer["torch_rng"])
    if trainer["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    if not math.isfinite(float(state.get("elapsed_s", 0.0))):
        raise CheckpointError(f"{ckpt}/state.json: elapsed_s is not finite")
    return state

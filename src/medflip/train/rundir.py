"""Safe run folders: one run at a time, no silent mixing of runs, resume only what can be resumed exactly.

`open_run(run_dir, cfg, resume, overwrite)` is called once by the trainer before it touches the folder:

* **Lock.** `run_dir/.lock` holds {pid, host, process start time}. A second run into the folder refuses
  while the first one lives; a lock left by a dead process (kill -9, power loss) on this host is taken
  over with a warning. A lock from another host cannot be checked and is never taken over silently.
* **New run** (`resume=False`): a folder that already holds checkpoints or a final model refuses,
  unless `overwrite`: then medflip's own outputs (checkpoints/, model/, log.csv, tensorboard/,
  config.json) are removed first, so no stale step_* from an older run is read later.
* **Resume** (`resume=True`: the latest checkpoint of run_dir; or a path: that checkpoint folder, or a run
  folder's latest): the checkpoint's run config must equal the new one in every key that changes the
  run's numbers; the error names the keys. What may change: where the run lives and how often it logs
  and checkpoints (RESUME_FREE), the device (the run continues, though not bit-identical across
  devices), and `train.steps` may grow (see `check_resume_config` for the schedule rule).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from medflip.errors import UserError
from medflip.train.checkpoint import latest_checkpoint, list_checkpoints, read_state

LOCK_NAME = ".lock"
# Keys that do not change a run's numbers: the folder, logging, checkpoint cadence, device.
RESUME_FREE = frozenset(
    {"train.out", "train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.device"}
)
OUTPUTS = ("checkpoints", "model", "tensorboard", "log.csv", "config.json")


class RunFolderError(UserError):
    """The run folder is busy, holds another run, or does not match the run being resumed."""


# ---------------------------------------------------------------- lock
def _proc_start(pid: int) -> str:
    """Start time of process `pid` in clock ticks since boot (Linux), "" where unknown: tells a live
    process from a new one that reuses a dead one's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    now = _proc_start(pid)
    return not (start and now and now != start)


class RunLock:
    """`run_dir/.lock`: created atomically (a hard link of a fully written file), removed by `release`."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def _content(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "start": _proc_start(pid), "since": time.time()}

    def _try_create(self) -> bool:
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._content()))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> None:
        for _ in range(3):
            if self._try_create():
                self.held = True
                atexit.register(self.release)  # a run that ends by an exception leaves no lock behind
                return
            try:
                holder = json.loads(self.path.read_text())
                pid, host, start = int(holder["pid"]), str(holder["host"]), str(holder.get("start", ""))
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except (OSError, ValueError, KeyError, TypeError):
                holder, pid, host, start = {}, -1, "?", ""
            if host == socket.gethostname() and pid > 0:
                if pid == os.getpid():  # an earlier run in this process ended by an exception
                    self._take_over()
                    continue
                if not _alive(pid, start):
                    print(
                        f"warning: {self.path.parent}: taking over the lock of process {pid}, which is gone "
                        "(an interrupted run)",
                        file=sys.stderr,
                    )
                    self._take_over()
                    continue
                raise RunFolderError(
                    f"{self.path.parent} is in use by another medflip run (pid {pid} on this host); "
                    "wait for it to finish or choose another --train.out"
                )
            raise RunFolderError(
                f"{self.path.parent} is locked by a run on host {host!r} (pid {pid}) that cannot be checked "
                f"from here; if that run is gone, delete {self.path}"
            )
        raise RunFolderError(f"could not take the lock {self.path} (another run is starting?)")

    def _take_over(self) -> None:
        """Move the stale lock aside atomically: of two processes taking over, one wins the create."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
            aside.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            holder = json.loads(self.path.read_text())
            if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self.path.unlink()
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------- config comparison
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def _same_path(a: Any, b: Any) -> bool:
    return bool(a) and bool(b) and os.path.realpath(str(a)) == os.path.realpath(str(b))


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], ckpt_step: int) -> None:
    """Refuse to resume when the run would not continue the checkpoint's run exactly.

    saved: the config stored in the checkpoint; current: this invocation's (both `dataclasses.asdict`).
    Schedule rule for a grown `train.steps`: the warmup + cosine is a function of train.steps, so the
    steps after the checkpoint follow the longer cosine from the checkpoint's step on (the learning rate
    steps up from the shorter schedule's value to the longer one's); the steps before are kept as they
    were. Shrinking below the checkpoint's `train.steps` is refused (it would change finished steps'
    schedule meaning and can put the checkpoint past the end).
    """
    old, new = _flatten(saved), _flatten(current)
    unknown = sorted(set(old) - set(new))
    if unknown:
        raise RunFolderError(
            "the checkpoint was written by another medflip version: config keys this version does not know: "
            + ", ".join(unknown)
        )
    changed = []
    for key in sorted(new):
        if key in RESUME_FREE or key not in old or old[key] == new[key]:
            continue  # keys new in this version keep their default: same as before they existed
        if key == "data.cache" and _same_path(old[key], new[key]):
            continue
        if key == "train.steps" and int(new[key]) >= int(old[key]):
            continue
        changed.append(f"{key} (checkpoint: {old[key]!r}, now: {new[key]!r})")
    if changed:
        raise RunFolderError(
            f"cannot resume from step {ckpt_step}: the config differs from the checkpoint's in "
            + "; ".join(changed)
            + ". These change the run's numbers; resume with the checkpoint's values, or start a new run "
            "(another --train.out, or --overwrite). Only train.steps may grow."
        )


# ---------------------------------------------------------------- the entry point
def _resolve_checkpoint(run_dir: Path, resume: bool | str | os.PathLike[str]) -> Path | None:
    if resume is True:
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if (path / "state.json").is_file():
        return path
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found
    raise RunFolderError(
        f"--resume {path}: not a checkpoint folder (no state.json) nor a run with checkpoints"
    )


def _clear_outputs(run_dir: Path) -> None:
    for name in OUTPUTS:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def open_run(
    run_dir: str | os.PathLike[str],
    cfg: Any,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    rank: int = 0,
) -> tuple[Path | None, RunLock | None]:
    """Lock the run folder (rank 0) and decide where training starts. Returns (checkpoint or None, lock).

    Raises RunFolderError with what to do when the folder is busy, holds another run, or the config
    does not match the checkpoint being resumed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = None
    if rank == 0:
        lock = RunLock(run_dir)
        lock.acquire()
    try:
        ckpt = _resolve_checkpoint(run_dir, resume) if resume else None
        if rank == 0 and not resume:
            existing = list_checkpoints(run_dir)
            if existing or (run_dir / "model").exists():
                if not overwrite:
                    what = f"{len(existing)} checkpoint(s)" if existing else "a trained model"
                    raise RunFolderError(
                        f"{run_dir} already holds {what} of an earlier run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --train.out"
                    )
                print(f"--overwrite: removing the earlier run's outputs in {run_dir}", file=sys.stderr)
                _clear_outputs(run_dir)
        if ckpt is None:
            if resume:
                print(f"--resume: no checkpoint in {run_dir} yet; starting from step 0", file=sys.stderr)
            return None, lock
        state = read_state(ckpt)
        current = dataclasses.asdict(cfg)
        check_resume_config(state.get("config", {}), current, state["step"])
        later = [p for p in list_checkpoints(run_dir) if _step(p) > state["step"]]
        if rank == 0 and later:
            if not overwrite:
                raise RunFolderError(
                    f"resuming from step {state['step']} but {run_dir} holds later checkpoints "
                    f"({', '.join(p.name for p in later[:3])}) of the run that went on from there; "
                    "pass --overwrite to discard them"
                )
            for p in later:
                shutil.rmtree(p)
        return ckpt, lock
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _step(path: Path) -> int:
    try:
        return int(path.name.split("_")[-1])
    except ValueError:
        return -1

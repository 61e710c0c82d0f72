"""Run the study's cells: pre-train (resuming a half-trained cell), evaluate, skip what is finished.

Each cell is two commands, both recorded in the cell folder (commands.txt) and in the report:
  medflip pretrain ...                    (the method's flags; one thread, a CPU-time budget)
  medflip study eval-cell NAME --out OUT  (every task on the final model)
Both run as subprocesses (OMP_NUM_THREADS=threads each), `jobs` cells side by side: the study runs exactly
the commands it reports, and a crash in one cell cannot take the study down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medflip.config import from_dict
from medflip.errors import UserError
from medflip.study.cell import prepare_texts
from medflip.study.plan import Cell, StudyConfig, cells, command_line, pretrain_argv


def eval_argv(cfg: StudyConfig, cell: Cell) -> list[str]:
    return ["study", "eval-cell", cell.name, "--out", cfg.out]


def cell_status(cfg: StudyConfig, cell: Cell) -> str:
    """done | trained | partial | todo."""
    folder = cell.folder(cfg)
    if (folder / "result.json").is_file():
        return "done"
    if (folder / "run" / "model" / "config.json").is_file():
        return "trained"
    if any((folder / "run" / "checkpoints").glob("step_*/state.json")):
        return "partial"
    return "todo"


def save_config(cfg: StudyConfig) -> Path:
    """out/study.json; refuses an out folder that holds a study with other settings (numbers would mix)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") != cfg.key():
            raise UserError(
                f"{out} holds a study with other settings (key {old.get('key')} != {cfg.key()}): "
                "use another --out, or the settings in study.json"
            )
    path.write_text(json.dumps({"key": cfg.key(), "config": dataclasses.asdict(cfg)}, indent=2))
    return path


def load_config(out: str | Path) -> StudyConfig:
    path = Path(out) / "study.json"
    if not path.is_file():
        raise UserError(f"{path} not found: run `medflip study run --out {out}` first")
    return from_dict(StudyConfig, json.loads(path.read_text())["config"])


def launch(argv: list[str], env: dict[str, str], log: Path) -> int:
    """`python -m medflip.cli ARGV` with output appended to `log`; its exit code. (Tests run it in-process.)"""
    with log.open("a") as f:
        return subprocess.run(
            [sys.executable, "-m", "medflip.cli", *argv], stdout=f, stderr=subprocess.STDOUT, env=env
        ).returncode


def _run(argv: list[str], cfg: StudyConfig, log: Path) -> float:
    """Run `medflip ARGV` in a subprocess (output appended to `log`); returns its wall-clock seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (log.parent / "commands.txt").open("a") as f:
        f.write(command_line(argv, cfg.threads) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads)}
    src = str(Path(__file__).resolve().parents[2])  # this checkout's code, also without an install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    t0 = time.time()
    rc = launch(argv, env, log)
    if rc:
        raise UserError(f"`{command_line(argv, cfg.threads)}` failed (exit {rc}); log: {log}")
    return time.time() - t0


def run_cell(cfg: StudyConfig, cell: Cell) -> str:
    """Pre-train (or resume) and evaluate one cell; returns what was done."""
    status = cell_status(cfg, cell)
    if status == "done":
        return "skipped (finished)"
    folder = cell.folder(cfg)
    did = []
    if status in ("todo", "partial"):
        argv = pretrain_argv(cfg, cell) + (["--resume"] if status == "partial" else [])
        wall = _run(argv, cfg, folder / "pretrain.log")
        _add_wall(folder, "pretrain_wall_s", wall)
        did.append("resumed pre-training" if status == "partial" else "pre-trained")
    _add_wall(folder, "eval_wall_s", _run(eval_argv(cfg, cell), cfg, folder / "eval.log"))
    did.append("evaluated")
    return ", ".join(did)


def _add_wall(folder: Path, key: str, seconds: float) -> None:
    """Wall-clock seconds per stage (summed over resumptions) in wall.json, for the per-cell time table."""
    path = folder / "wall.json"
    d = json.loads(path.read_text()) if path.is_file() else {}
    d[key] = round(d.get(key, 0.0) + seconds, 1)
    d.setdefault("load", []).append(round(os.getloadavg()[0], 2))  # how shared the machine was
    path.write_text(json.dumps(d))


def run_study(cfg: StudyConfig, only: list[str] | None = None, limit: int = 0) -> dict:
    """Every cell of the plan (or those named in `only`), `cfg.jobs` at a time. Returns counts by outcome."""
    save_config(cfg)
    info = prepare_texts(cfg)
    print(
        f"text corpus: {info['train_reports']} reports for pre-training, {info['held_out_reports']} held out; "
        f"retrieval pool {info['pool_per_class']} + {info['pool_per_class']} sentences"
    )
    todo = [c for c in cells(cfg) if not only or c.name in only]
    if only:
        unknown = sorted(set(only) - {c.name for c in todo})
        if unknown:
            raise UserError(f"no such cell(s) in the plan: {unknown}")
    finished = [c for c in todo if cell_status(cfg, c) == "done"]
    pending = [c for c in todo if c not in finished]
    if limit > 0:
        pending = pending[:limit]
    print(f"study {cfg.out}: {len(todo)} cells, {len(finished)} finished (skipped), {len(pending)} to run")
    counts = {"skipped": len(finished), "ran": 0, "failed": 0}
    lock = threading.Lock()
    t0 = time.time()

    def one(i_cell: tuple[int, Cell]) -> None:
        i, cell = i_cell
        try:
            what = run_cell(cfg, cell)
            key = "ran"
        except UserError as e:
            what, key = f"FAILED: {e}", "failed"
        with lock:
            counts[key] += 1
            print(f"[{i + 1}/{len(pending)}] {cell.name}: {what} ({time.time() - t0:.0f} s)", flush=True)

    if cfg.jobs == 1:
        for item in enumerate(pending):
            one(item)
    else:
        with ThreadPoolExecutor(cfg.jobs) as pool:
            list(pool.map(one, enumerate(pending)))
    print(
        f"study: {counts['ran']} cells run, {counts['skipped']} skipped (finished), {counts['failed']} failed"
    )
    return counts

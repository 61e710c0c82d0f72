"""kill -9 at seeded random moments: `medflip pretrain --resume` ends bit-identical to an uninterrupted run.

Real processes, real SIGKILL. The child is `medflip pretrain` started through a small wrapper that only
prints "STEP n" before each batch (so the parent knows where it is) and, for the kill inside a
checkpoint write, pauses after trainer.safetensors was written (the checkpoint is then half on disk).
One chain: run, kill, resume, kill, ... 5 kills at points drawn from a seeded generator (seed printed;
MEDFLIP_KILL_SEED overrides), then the final model.safetensors bytes and log.csv rows are compared with
an uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

STEPS, CKPT_EVERY = 20, 3
TIMING_COLUMNS = ("elapsed_s", "pairs_per_s")  # wall-clock: the only columns allowed to differ

WRAPPER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from medflip.data import streams

    real_batch = streams.DecoupledBatches.batch

    def batch(self, step, *args, **kwargs):
        print(f"STEP {step}", flush=True)
        return real_batch(self, step, *args, **kwargs)

    streams.DecoupledBatches.batch = batch
    pause = int(os.environ.get("PAUSE_IN_CKPT", "-1"))
    if pause >= 0:
        import safetensors.torch as st
        real_save = st.save_file

        def save_file(tensors, filename, metadata=None):
            real_save(tensors, filename, metadata=metadata)
            if filename.endswith("trainer.safetensors") and f"step_{pause:08d}" in filename:
                print("IN_CKPT", flush=True)
                time.sleep(120)

        st.save_file = save_file
    from medflip.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def make_cache_and_corpus(root: Path) -> tuple[Path, Path]:
    """16 small PNG images -> a 32 px cache; a report corpus with sentences of many lengths."""
    from PIL import Image

    from medflip.data.cache import build_cache
    from medflip.data.manifest import write_manifest
    from medflip.observations import OBSERVATIONS

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        p = root / "img" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(p)
        row = {"path": str(p), "source": "t", "patient_id": str(i), "split": "train"}
        row[OBSERVATIONS[i % len(OBSERVATIONS)]] = "1"
        rows.append(row)
    import pandas as pd

    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    build_cache(root / "manifest.csv", root / "cache", size=32, workers=0, progress=False)
    phrases = [
        "There is mild cardiomegaly.",
        "Small left pleural effusion with adjacent atelectasis in the left lower lobe.",
        "No pneumothorax.",
        "Right upper lobe consolidation consistent with pneumonia.",
        "The lungs are clear without focal consolidation, effusion or pneumothorax seen today.",
        "Pulmonary edema.",
        "Stable moderate cardiomegaly and a small right effusion.",
    ]
    reports = [" ".join(rng.choice(phrases, 3, replace=False)) for _ in range(10)]
    pd.DataFrame({"report": reports}).to_csv(root / "reports.csv", index=False)
    return root / "cache", root / "reports.csv"


def pretrain_args(cache: Path, corpus: Path, out: Path) -> list[str]:
    return [
        "pretrain",
        "--data.cache", str(cache),
        "--data.texts", str(corpus),
        "--data.batch_size", "4",
        "--model.vision.size", "tiny",
        "--model.vision.image_size", "32",
        "--model.embed_dim", "32",
        "--model.text.freeze_layers", "6",  # locked text tower: its features are memoised
        "--train.steps", str(STEPS),
        "--train.ckpt_every", str(CKPT_EVERY),
        "--train.log_every", "1",
        "--train.device", "cpu",
        "--optim.warmup_steps", "2",
        "--train.out", str(out),
        "--no-progress",
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start(wrapper: Path, args: list[str], log: Path, pause_in_ckpt: int = -1) -> subprocess.Popen:
    env = child_env()
    env["PAUSE_IN_CKPT"] = str(pause_in_ckpt)
    return subprocess.Popen(
        [sys.executable, str(wrapper), *args],
        stdout=subprocess.PIPE,
        stderr=open(log, "a"),  # noqa: SIM115 - closed with the process
        text=True,
        env=env,
    )


def kill_plan(seed: int) -> list[tuple[str, int, float]]:
    """5 kill points in run order: ("step", s, delay) kills `delay` s after step s began; ("ckpt", s, 0)
    kills while checkpoint s is half written. Exactly one is inside a checkpoint write."""
    rng = np.random.default_rng(seed)
    ckpt_step = int(rng.choice([6, 9, 12]))
    others = rng.choice(
        [s for s in range(1, STEPS - 1) if s not in (ckpt_step - 1, ckpt_step)], 4, replace=False
    )
    plan = [("ckpt", ckpt_step, 0.0)] + [("step", int(s), float(rng.uniform(0, 0.08))) for s in others]
    return sorted(plan, key=lambda p: p[1] - (0.5 if p[0] == "ckpt" else 0))


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def test_kill9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    from medflip.train.checkpoint import latest_checkpoint, list_checkpoints

    seed = int(os.environ.get("MEDFLIP_KILL_SEED", "0"))
    plan = kill_plan(seed)
    print(f"kill seed {seed}: plan {plan}")
    cache, corpus = make_cache_and_corpus(tmp_path)
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)

    ref_out, run_out = tmp_path / "reference", tmp_path / "killed"
    ref = start(wrapper, pretrain_args(cache, corpus, ref_out), tmp_path / "ref.log")
    ref.stdout.read()
    assert ref.wait(timeout=240) == 0, (tmp_path / "ref.log").read_text()

    for n, (kind, step, delay) in enumerate(plan):
        args = pretrain_args(cache, corpus, run_out) + (["--resume"] if n else [])
        log = tmp_path / f"run{n}.log"
        p = start(wrapper, args, log, pause_in_ckpt=step if kind == "ckpt" else -1)
        target = "IN_CKPT" if kind == "ckpt" else f"STEP {step}"
        for line in p.stdout:
            if line.strip() == target:
                time.sleep(delay)
                os.kill(p.pid, signal.SIGKILL)
                break
        p.stdout.close()
        rc = p.wait(timeout=240)
        assert rc == -signal.SIGKILL, f"kill {n} ({kind} {step}) missed: rc {rc}\n{log.read_text()}"
        if n:
            assert "taking over the lock" in log.read_text()  # the killed run's lock was stale
        if kind == "ckpt":  # killed mid-write: the half checkpoint is invisible, `latest` is the previous
            assert (run_out / "checkpoints" / f".tmp_step_{step:08d}").is_dir()
            assert f"step_{step:08d}" not in [c.name for c in list_checkpoints(run_out)]
            assert latest_checkpoint(run_out).name == f"step_{step - CKPT_EVERY:08d}"

    last = start(wrapper, pretrain_args(cache, corpus, run_out) + ["--resume"], tmp_path / "final.log")
    last.stdout.read()
    assert last.wait(timeout=240) == 0, (tmp_path / "final.log").read_text()

    assert (run_out / "model" / "model.safetensors").read_bytes() == (
        ref_out / "model" / "model.safetensors"
    ).read_bytes()
    assert read_log(run_out / "log.csv") == read_log(ref_out / "log.csv")
    assert [int(r["step"]) for r in read_log(run_out / "log.csv")] == list(range(1, STEPS + 1))
    assert not (run_out / ".lock").exists()

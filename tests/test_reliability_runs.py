"""Run folders and checkpoints under faults: full disk, two runs in one folder, stale locks, changed
configs on resume, damaged or foreign checkpoints, and no unpickling anywhere."""

from __future__ import annotations

import ast
import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medflip.data.streams import DecoupledBatches, TextCorpus
from medflip.model.medflip import MedFLIP
from medflip.train import checkpoint as ckpt_mod
from medflip.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_model_state,
    load_trainer_state,
    read_state,
)
from medflip.train.config import PretrainConfig
from medflip.train.loop import build_optimizer, pretrain
from medflip.train.rundir import RunFolderError, RunLock, check_resume_config, open_run

K = 14


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is faster and immune to the other jobs on a shared CPU."""


def tiny_cfg(out, steps=6) -> PretrainConfig:
    cfg = PretrainConfig()
    cfg.model.vision.size = "tiny"
    cfg.model.vision.image_size = 32
    cfg.model.embed_dim = 32
    cfg.model.text.pretrained = False  # architecture only: these tests are about files, not language
    cfg.model.text.freeze_layers = 6
    cfg.data.batch_size = 4
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.ckpt_every = 2
    cfg.train.device = "cpu"
    cfg.train.out = str(out)
    cfg.optim.warmup_steps = 1
    return cfg


def batches(cfg) -> DecoupledBatches:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 36, 36), dtype=np.uint8)
    labels = np.eye(K, dtype=np.float32)[np.arange(8) % K]
    texts = [f"finding {i} is {'very ' * i}small" for i in range(8)]
    corpus = TextCorpus(texts, [[t] for t in texts], [labels[i : i + 1] for i in range(8)], labels)
    return DecoupledBatches(images, labels, corpus, 4, 32, seed=0)


def run(cfg, **kw) -> MedFLIP:
    torch.manual_seed(0)
    model = MedFLIP(cfg.model)
    pretrain(model, batches(cfg), cfg, progress=False, **kw)
    return model


# ---------------------------------------------------------------- disk full
def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import safetensors.torch as st

    import medflip.train.checkpoint as checkpoint_module

    cfg = tiny_cfg(tmp_path, steps=6)
    real = st.save_file

    def full_disk(tensors, filename, metadata=None):
        if "step_00000004" in filename and filename.endswith("trainer.safetensors"):
            Path(filename).write_bytes(b"\0" * 100)  # a partial file, as a real full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    # where the trainer's checkpoint writer looks it up (it imports the function at module load)
    monkeypatch.setattr(checkpoint_module, "save_file", full_disk)
    with pytest.raises(
        CheckpointError, match=r"step 4.*No space left.*last good checkpoint is .*step_00000002"
    ):
        run(cfg)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_00000002"
    assert not list((tmp_path / "checkpoints").glob(".tmp*")), "half-written checkpoint left behind"

    monkeypatch.setattr(checkpoint_module, "save_file", real)  # space freed: --resume finishes from step 2
    resumed = run(cfg, resume=True)
    straight = run(tiny_cfg(tmp_path / "straight", steps=6))
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_disk_full_while_writing_latest_pointer(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, steps=4)
    run(cfg)
    before = (tmp_path / "checkpoints" / "latest").read_text()
    real_replace = ckpt_mod.os.replace

    def fail_on_latest(src, dst):
        if str(dst).endswith("latest"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", fail_on_latest)
    model = MedFLIP(cfg.model)
    opt = build_optimizer(model, cfg.optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(CheckpointError, match="No space"):
        ckpt_mod.save_checkpoint(tmp_path, 6, model, opt, sched, {"elapsed_s": 0.0})
    assert (tmp_path / "checkpoints" / "latest").read_text() == before
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002", "step_00000004"]  # no step 6
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


# ---------------------------------------------------------------- locks
def _lock_of(pid: int, host: str | None = None) -> str:
    from medflip.train.rundir import _proc_start

    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "start": _proc_start(pid)})


def test_second_run_into_a_busy_folder_refuses(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(_lock_of(other.pid))
        with pytest.raises(RunFolderError, match=f"in use by another medflip run \\(pid {other.pid}"):
            open_run(tmp_path, tiny_cfg(tmp_path))
    finally:
        other.kill()
        other.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == other.pid  # not stolen


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(_lock_of(dead.pid))
    _, lock = open_run(tmp_path, tiny_cfg(tmp_path))
    assert f"taking over the lock of process {dead.pid}" in capsys.readouterr().err
    import os

    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_lock_from_another_host_is_not_taken(tmp_path):
    (tmp_path / ".lock").write_text(_lock_of(1, host="some-other-node"))
    with pytest.raises(RunFolderError, match="some-other-node.*delete"):
        RunLock(tmp_path).acquire()


# ---------------------------------------------------------------- new run / resume config
def test_new_run_into_a_folder_with_checkpoints_needs_overwrite(tmp_path):
    run(tiny_cfg(tmp_path, steps=2))
    with pytest.raises(RunFolderError, match="already holds 1 checkpoint.*--overwrite"):
        run(tiny_cfg(tmp_path, steps=2))
    (tmp_path / "checkpoints" / "step_00000099").mkdir()  # stale junk of the older run
    (tmp_path / "checkpoints" / "step_00000099" / "state.json").write_text('{"step": 99}')
    run(tiny_cfg(tmp_path, steps=2), overwrite=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]


def test_resume_with_a_changed_config_names_the_keys(tmp_path):
    run(tiny_cfg(tmp_path, steps=2))
    cfg = tiny_cfg(tmp_path, steps=4)
    cfg.data.batch_size = 8
    cfg.loss.tau_s = 0.5
    with pytest.raises(RunFolderError, match=r"data.batch_size \(checkpoint: 4, now: 8\).*loss.tau_s"):
        open_run(tmp_path, cfg, resume=True)
    cfg = tiny_cfg(tmp_path, steps=1)
    with pytest.raises(RunFolderError, match="train.steps"):
        open_run(tmp_path, cfg, resume=True)
    # Allowed: more steps, another logging / checkpoint cadence, another folder name for the same run.
    cfg = tiny_cfg(tmp_path, steps=4)
    cfg.train.log_every, cfg.train.ckpt_every = 5, 3
    ckpt, lock = open_run(tmp_path, cfg, resume=True)
    lock.release()
    assert ckpt.name == "step_00000002"


def test_config_from_another_version_is_a_clear_error():
    saved = {"train": {"steps": 10, "warp_drive": True}}
    with pytest.raises(RunFolderError, match="another medflip version.*train.warp_drive"):
        check_resume_config(saved, {"train": {"steps": 10}}, 5)


def test_resume_path_and_later_checkpoints(tmp_path):
    run(tiny_cfg(tmp_path, steps=4))
    with pytest.raises(RunFolderError, match="later checkpoints.*step_00000004.*--overwrite"):
        open_run(tmp_path, tiny_cfg(tmp_path, steps=4), resume=tmp_path / "checkpoints" / "step_00000002")
    with pytest.raises(RunFolderError, match="not a checkpoint folder"):
        open_run(tmp_path, tiny_cfg(tmp_path, steps=4), resume=tmp_path / "nowhere")
    ckpt, lock = open_run(
        tmp_path,
        tiny_cfg(tmp_path, steps=4),
        resume=tmp_path / "checkpoints" / "step_00000002",
        overwrite=True,
    )
    lock.release()
    assert ckpt.name == "step_00000002" and [p.name for p in list_checkpoints(tmp_path)] == [ckpt.name]


# ---------------------------------------------------------------- damaged / foreign checkpoints
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    run(tiny_cfg(out, steps=2))
    torch.set_num_threads(n)
    return out / "checkpoints" / "step_00000002"


def _copy(saved: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(saved, tmp_path / "c"))


def _edit_weights(path: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    fn(state)
    save_file(state, str(path / "model.safetensors"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.pop("logit_scale"), "missing 1 tensors \\(logit_scale\\)"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "1 unexpected tensors \\(extra.weight\\)"),
        (lambda s: s.__setitem__("image_proj.weight", torch.zeros(3, 3)), "wrong shapes: image_proj.weight"),
        (lambda s: s["image_proj.weight"].__setitem__((0, 0), float("nan")), "non-finite.*image_proj.weight"),
    ],
    ids=["missing", "extra", "shape", "nan"],
)
def test_damaged_weights_are_clear_errors(saved, tmp_path, damage, message):
    c = _copy(saved, tmp_path)
    _edit_weights(c, damage)
    with pytest.raises(CheckpointError, match=message):
        load_model_state(c, MedFLIP(tiny_cfg(tmp_path).model))


def test_truncated_or_foreign_files_are_clear_errors(saved, tmp_path):
    c = _copy(saved, tmp_path)
    model = MedFLIP(tiny_cfg(tmp_path).model)
    opt = build_optimizer(model, tiny_cfg(tmp_path).optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = (c / "trainer.safetensors").read_bytes()
    (c / "trainer.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot resume from"):
        load_trainer_state(c, opt, sched)
    weights = (c / "model.safetensors").read_bytes()
    (c / "model.safetensors").write_bytes(weights[:1000])
    with pytest.raises(CheckpointError, match="cannot read the model weights"):
        load_model_state(c, model)
    state = json.loads((c / "state.json").read_text())
    (c / "state.json").write_text(json.dumps({**state, "format": "medflip-checkpoint/9"}))
    with pytest.raises(CheckpointError, match="format 'medflip-checkpoint/9'"):
        read_state(c)
    (c / "config.json").write_text('{"architecture": "SomethingElse", "config": {}}')
    with pytest.raises(CheckpointError, match="not a medflip model"):
        load_model_state(c, model)


def test_checkpoint_files_need_no_unpickler(saved):
    names = sorted(p.name for p in saved.iterdir())
    assert "trainer.pt" not in names and "trainer.safetensors" in names
    for p in saved.rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:4]
            assert not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80"), f"{p} looks pickled"


def test_no_unsafe_deserialisation_in_the_source():
    """Every torch.load passes weights_only=True; nothing imports pickle / dill / joblib."""
    src = Path(__file__).resolve().parents[1] / "src" / "medflip"
    offenders = []
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load":
                base = getattr(node.func.value, "id", "")
                if base == "torch" and not any(
                    k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords
                ):
                    offenders.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names):
                    offenders.append(f"{path}:{node.lineno} imports a pickler")
    assert not offenders, offenders

"""Every documented command runs: the fenced examples of README.md and docs/*.md, in order, on small datasets
in their official layouts (tests/fixtures_layouts.py), with tiny model sizes appended as extra flags.

How a document is read:
- ```bash blocks: each command (backslash continuations joined, comments dropped, `for V in ...; do ...; done`
  unrolled) runs in one shared workspace, README.md first, then docs/ in alphabetical order, so a later
  document may use what an earlier one made. `/data/...` in a command is the fixture's `ws/data/...`.
- ```yaml / ```json blocks whose first line is `# NAME.yaml` (or .yml / .json) are written to the workspace
  as NAME before the commands that follow them (e.g. the flip.yaml a pretrain command reads).
- ```python blocks run (exec) in the workspace, one namespace per document.
- `<!-- recipe: skip REASON -->` on the line before a fence skips that block; the skip and its reason are
  counted and printed. Commands that are not `medflip` / `torchrun` must be listed in SHELL (how they run) or
  SKIP (why not). `/shared/...` (storage all nodes of a multi-node run see) is the workspace.

`medflip` commands run in this process through `medflip.cli.main(argv)` (the same parser and functions as the
console script; one torch import instead of one per command) except the `label*` commands, which run as
real subprocesses of the installed entry point; a command's return code must be 0. `VAR=value medflip ...`
sets VAR for that command. Everything else runs too (tests/recipe_launch.py says how): the venv set-up lines
(offline, into the workspace's copy of this checkout), other shell lines (bash, with this environment's
`python` / `medflip` on PATH), the one-node torchrun example (2 CPU processes, gloo), the multi-node launch
(every node on 127.0.0.1), a `#!` block as a script (the SLURM job under a stand-in `srun`), and `medflip serve`
(started, asked once through its API, stopped). The workspace is a copy of the checkout's pyproject.toml,
README.md, src/ and scripts/ beside the fixtures, so `pip install -e .` and `scripts/...` work as documented.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

import recipe_launch as launch
from fixtures_layouts import build_workspace

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Documented shell lines that are not medflip / torchrun commands: every one must be listed here (how it runs).
SHELL = {
    "python3 -m venv": "the set-up line: a venv, pip install -e of this checkout (offline), then its command",
    "python -c": "a Python one-liner (this environment's python)",
    "/usr/bin/time": "a timed command (bash, this environment's medflip on PATH)",
    "scripts/kermany_results.sh": "the results script (bash), tiny models through its PRETRAIN_FLAGS knob",
}

# Documented commands that are not run here: counted, with the reason (none at present; kept for new ones).
SKIP: dict[str, str] = {}

TINY_MODEL = [
    "--model.vision.size", "tiny", "--model.vision.image_size", "32", "--model.embed_dim", "32",
    "--model.text.freeze_layers", "5", "--data.batch_size", "4", "--optim.warmup_steps", "1",
]  # fmt: skip


def extra_flags(argv: list[str]) -> list[str]:
    """Tiny sizes appended to a documented command (argparse: the last value of a flag wins)."""
    cmd = tuple(a for a in argv[:2] if not a.startswith("-"))
    if cmd[:1] == ("pretrain",):
        steps = "3" if "--resume" in argv else "2"
        extra = [*TINY_MODEL, "--train.steps", steps, "--train.log_every", "1", "--train.ckpt_every", "1000"]
        extra += ["--train.time_budget_min", "0", "--no-progress"]
        if "--train.eval_every" in argv:
            extra += ["--train.eval_every", "1"]
        return extra
    return {
        ("data", "import"): ["--per-class", "2"] if "chexpert-5x200" in argv else [],
        ("data", "cache"): ["--workers", "0"],
        ("data", "bench"): ["--seconds", "0.2", "--build-images", "2", "--source-size", "64", "--batch", "8"],
        ("eval", "zeroshot"): ["--bootstrap", "20", "--batch-size", "16"],
        ("eval", "retrieval"): ["--per-class", "8", "--batch-size", "16"],
        ("eval", "probe"): ["--bootstrap", "20", "--batch-size", "16"],
        ("eval", "finetune"): ["--bootstrap", "20", "--batch-size", "16", "--epochs", "1", "--min-steps", "1"]
        + ["--train-batch-size", "4"],
        ("eval", "efficiency"): ["--bootstrap", "10", "--batch-size", "16"],
        ("bench",): [
            "--model.vision.size",
            "tiny",
            "--model.vision.image_size",
            "32",
            "--data.batch_size",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
        ]
        + ["--svd-batch", "4", "--text-tokens", "8"],
        ("label-bench",): ["--reports", "200"],
        ("demo",): ["--train.steps", "2", "--data.batch_size", "8", "--demo.images_per_class", "2"]
        + ["--data.balance_text", "2", "--demo.test_per_class", "2", "--demo.render_size", "32"]
        + ["--model.vision.image_size", "32", "--no-progress"],
        ("study", "run"): TINY_STUDY,
    }.get(cmd, [])


# `medflip study run`: two methods, seed 0, no data-fraction cells, a 0.24 s CPU budget, one cell run (the other,
# medflip_f1_s0, is the cell docs/reproduction.md trains and evaluates by hand right after).
TINY_STUDY = [
    "--methods", "medclip,medflip", "--only", "medclip_f1_s0", "--seeds", "0", "--pretrain_fractions", "1",
    "--budget_min", "0.004", "--image_size", "32", "--vision_size", "tiny", "--embed_dim", "32",
    "--batch_size", "4", "--warmup_steps", "1", "--text_freeze_layers", "5", "--ckpt_every", "1000",
    "--ckpt_every_other", "1000", "--curve_checkpoints", "0", "--probe_fractions", "1",
    "--finetune_epochs", "1", "--n_boot", "20", "--jobs", "1", "--threads", "1", "--device", "cpu",
]  # fmt: skip


def extra_env(words: list[str]) -> dict[str, str]:
    """Tiny sizes for a script through the knob it documents."""
    if words and words[0] == "scripts/kermany_results.sh":
        pretrain = extra_flags(["pretrain"]) + ["--train.ckpt_every", "1"]  # efficiency reads checkpoints
        return {"PRETRAIN_FLAGS": shlex.join(pretrain)}
    return {}


@dataclass
class Example:
    doc: str  # "docs/data.md:12"
    kind: str  # command | shell | script | python | file | skip
    text: str
    reason: str = ""


def _commands(lines: list[str]) -> list[str]:
    """Shell lines -> commands: continuations joined, comments dropped, simple for-loops unrolled."""
    joined, buf = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    out, loop = [], None
    for line in joined:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        m = re.match(r"for (\w+) in (.+?); do$", " ".join(words))
        if m:
            loop = (m.group(1), m.group(2).split(), [])
        elif loop is not None and words == ["done"]:
            var, values, body = loop
            out += [re.sub(rf"\${var}\b|\${{{var}}}", v, b) for v in values for b in body]
            loop = None
        elif loop is not None:
            loop[2].append(" ".join(words))
        else:
            parts = [list(g) for k, g in itertools.groupby(words, lambda w: w == "&&") if not k]
            if len(parts) > 1 and all(p[0] == "medflip" for p in parts):  # `medflip a && medflip b`
                out += [shlex.join(p) for p in parts]
            else:
                out.append(shlex.join(words))
    return out


def documented_examples() -> list[Example]:
    examples = []
    for path in DOCUMENTS:
        lines = path.read_text().splitlines()
        name = str(path.relative_to(ROOT))
        i = 0
        while i < len(lines):
            m = re.match(r"^```(\w*)\s*$", lines[i])
            if not m or not m.group(1):
                i += 1
                continue
            lang, start = m.group(1), i
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body = lines[i + 1 : j]
            prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            skip = re.match(r"<!--\s*recipe:\s*skip\s*(.*?)\s*-->", prev.strip())
            where = f"{name}:{start + 1}"
            if lang in ("bash", "sh", "shell", "console") and body and body[0].startswith("#!"):
                kind = "skip" if skip else "script"  # a batch script: one documented command, run whole
                examples.append(Example(where, kind, "\n".join(body), skip and skip.group(1) or ""))
            elif lang in ("bash", "sh", "shell", "console"):
                for cmd in _commands(body):
                    if skip:
                        examples.append(
                            Example(where, "skip", cmd, skip.group(1) or "marked in the document")
                        )
                        continue
                    rest = shlex.join(launch.split_env(shlex.split(cmd))[1])
                    reason = next((r for k, r in SKIP.items() if rest.startswith(k)), None)
                    if reason:
                        examples.append(Example(where, "skip", cmd, reason))
                    elif rest.startswith(("medflip ", "torchrun ")):
                        examples.append(Example(where, "command", cmd))
                    else:
                        known = any(rest.startswith(k) for k in SHELL)
                        assert known, f"{where}: {cmd!r} is neither a medflip command nor listed in SHELL"
                        examples.append(Example(where, "shell", cmd))
            elif lang == "python":
                examples.append(
                    Example(
                        where, "skip" if skip else "python", "\n".join(body), skip and skip.group(1) or ""
                    )
                )
            elif lang in ("yaml", "yml", "json") and body:
                fm = re.match(r"^#\s*([\w.-]+\.(?:ya?ml|json))\s*$", body[0].strip())
                if fm and not skip:
                    examples.append(Example(where, "file", fm.group(1) + "\n" + "\n".join(body[1:])))
            i = j + 1
    return examples


def _argv(cmd: str, ws: Path) -> list[str]:
    """Shell words with /data/ mapped into the workspace and globs expanded (as the shell would)."""
    words = []
    cmd = cmd.replace(" /data/", f" {ws}/data/").replace(
        " /shared/", f" {ws}/"
    )  # /shared/: what all nodes see
    for w in shlex.split(cmd, comments=True):
        hits = sorted(glob.glob(w)) if any(c in w for c in "*?[") else []
        words += hits or [w]
    return words


def _entry_point() -> list[str]:
    script = Path(sys.executable).parent / "medflip"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "medflip.cli"]


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    """`VAR=value medflip ...` for an in-process command."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(example: Example, ws: Path, state: dict) -> tuple[bool, str]:
    """Run one example; returns (ran, note). Raises AssertionError with the output on failure."""
    from medflip.cli import main

    if example.kind == "file":
        name, _, content = example.text.partition("\n")
        (ws / name).write_text(content + "\n")
        return False, ""
    if example.kind == "python":
        ns = state.setdefault(example.doc.split(":")[0], {"__name__": "__doc_example__"})
        exec(compile(example.text, example.doc, "exec"), ns)
        return True, ""
    if example.kind == "script":
        assert "srun " in example.text, f"{example.doc}: only SLURM batch scripts are known"
        launch.run_slurm_script(example.text, ws, extra_flags)
        return True, ""
    if example.kind == "shell":
        if example.text.startswith("python3 -m venv"):
            return True, launch.run_venv_line(example.text, ws, extra_flags)
        launch.run_shell(
            example.text, ws, extra_flags, extra_env(launch.split_env(shlex.split(example.text))[1])
        )
        return True, ""
    env, words = launch.split_env(_argv(example.text, ws))
    if words[0] == "torchrun":
        nnodes = next((w.split("=")[1] for w in words if w.startswith("--nnodes=")), None)
        if "--nnodes" in words:
            nnodes = words[words.index("--nnodes") + 1]
        argv = words[words.index("pretrain") :] if "pretrain" in words else []
        if nnodes not in (None, "1"):
            launch.run_multinode_torchrun(words, ws, extra_flags(argv))
            return True, ""
        words = [sys.executable, "-m", "torch.distributed.run", *_force_nproc(words[1:])]
        words = words + extra_flags(argv) + ["--train.device", "cpu"]
        proc = subprocess.run(
            words, cwd=ws, env=launch.base_env(ws), capture_output=True, text=True, timeout=600
        )
        launch.check(proc)
        assert "pretrain: 2 processes" in proc.stdout + proc.stderr
        return True, ""
    if words[1] == "serve":
        launch.run_serve(words, ws, _entry_point(), ws / "cxr.dcm")
        return True, ""
    argv = words[1:] + extra_flags(words[1:])
    if argv[0].startswith("label"):  # real subprocesses of the installed entry point (no torch import)
        proc = subprocess.run(
            [*_entry_point(), *argv], cwd=ws, env={**launch.base_env(ws), **env}, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        launch.check(proc)
        return True, ""
    with _environ(env):
        rc = main(argv)
    assert rc == 0, f"exit code {rc} (the error is printed above)"
    return True, ""


def _checkout_copy(ws: Path) -> None:
    """What a clone holds that the documented commands use: pip install -e . and scripts/."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, ws / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "scripts"):
        shutil.copytree(ROOT / name, ws / name, ignore=ignore)


def _force_nproc(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("--nproc_per_node", "--nproc-per-node"):
            out += [a, "2"]
            i += 2
            continue
        if a.startswith(("--nproc_per_node=", "--nproc-per-node=")):
            out.append(a.split("=")[0] + "=2")
        else:
            out.append(a)
        i += 1
    return out


def test_documents_parse():
    examples = documented_examples()
    cmds = [e.text for e in examples if e.kind == "command"]
    assert any(c.startswith("medflip data import mimic-cxr") for c in cmds)
    assert _commands(["for f in 1 2; do", "  medflip x --a $f", "done"]) == [
        "medflip x --a 1",
        "medflip x --a 2",
    ]
    assert _commands(["medflip a \\", "   --b c   # comment"]) == ["medflip a --b c"]
    assert _commands(["medflip a && medflip b x"]) == ["medflip a", "medflip b x"]


@pytest.mark.slow
def test_documented_commands_run(tmp_path, monkeypatch, capsys):
    import torch

    ws = build_workspace(tmp_path / "ws")
    _checkout_copy(ws)
    monkeypatch.chdir(ws)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to a loaded CI machine
    examples = documented_examples()
    ran, skipped, notes, timings, state = 0, [], [], [], {}
    try:
        for ex in examples:
            if ex.kind == "skip":
                skipped.append((ex, ex.reason))
                continue
            t0 = time.perf_counter()
            try:
                did, note = _run(ex, ws, state)
            except BaseException as e:  # noqa: BLE001 - report which documented command failed
                out = capsys.readouterr()
                pytest.fail(
                    f"documented command failed: {ex.doc}\n  {ex.text}\n{type(e).__name__}: {e}\n"
                    f"{traceback.format_exc()[-2000:]}\nstdout:\n{out.out[-3000:]}\nstderr:\n{out.err[-3000:]}"
                )
            if did:
                ran += 1
                timings.append((time.perf_counter() - t0, ex.text[:90]))
                if note:
                    notes.append((ex, note))
            elif note:
                skipped.append((ex, note))
    finally:
        torch.set_num_threads(threads)
    total = ran + len(skipped)
    with capsys.disabled():
        print(
            f"\n{ran} of {total} documented commands ran"
            + (f" ({len(notes)} of them partly as CI's own step, noted below)" if notes else "")
            + (f"; {len(skipped)} not run:" if skipped else "")
        )
        for ex, why in skipped:
            print(f"  skipped {ex.doc}: {ex.text[:70]} -- {why}")
        for ex, note in notes:
            print(f"  note {ex.doc}: {ex.text[:70]} -- {note}")
        print("  slowest: " + "; ".join(f"{t:.1f}s {c}" for t, c in sorted(timings, reverse=True)[:5]))
    # a few results the recipes promise
    assert (ws / "runs/mimic/model/README.md").is_file() and (ws / "predictions.json").is_file()
    assert "val_accuracy" in (ws / "runs/mimic/log.csv").read_text()
    assert ran >= 40

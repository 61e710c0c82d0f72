"""How tests/test_recipes.py runs the documented commands that are not a plain `medflip ...` line: shell lines
(the venv install, the labeler timing, scripts/kermany_results.sh), multi-node torchrun launches, the SLURM batch
script and `medflip serve`. Each runs the documented line itself; what is changed is named here:

- tiny sizes are appended as extra flags (argparse: the last value of a flag wins), or passed through the knob a
  script documents for it (scripts/kermany_results.sh: PRETRAIN_FLAGS);
- machines become this one: a multi-node launch is one torchrun process per node on 127.0.0.1 (gloo, CPU) with
  one process per node, its rendezvous port a free one; `/shared/` (storage every node sees) is the workspace;
- SLURM is a stand-in `srun` / `scontrol` on PATH (fakebin/) with the environment sbatch sets (2 nodes);
- `medflip serve` gets a free --port, the workspace's small reports.csv as --corpus (the bundled IU corpus takes
  a minute to embed on a CPU) and a --cache-dir in the workspace; it counts as run once /api/analyze answered;
- the venv install runs offline: pip gets no index (PIP_NO_INDEX) and the already installed dependencies (those
  of the interpreter running the tests) through PYTHONPATH, and builds without isolation with that environment's
  setuptools (the [test] extra asks for one that needs no `wheel` package), so `pip install -e` really
  installs this checkout's copy into the new venv, in seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # python, medflip, torchrun of the environment running the tests

FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for SLURM's srun (tests/recipe_launch.py): one task per node of the allocation, all on this machine,
# each with the variables srun sets; exits with the first failure.
pids=()
for ((i = 0; i < SLURM_NNODES; i++)); do
  SLURM_NODEID=$i SLURM_PROCID=$i SLURM_LOCALID=0 SLURM_NTASKS=$SLURM_NNODES SLURM_STEP_NUM_NODES=$SLURM_NNODES \\
    SLURMD_NODENAME=127.0.0.1 "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
# Stand-in for `scontrol show hostnames NODELIST` (tests/recipe_launch.py): one host per line.
[ "$1 $2" = "show hostnames" ] || { echo "fake scontrol: only 'show hostnames'" >&2; exit 2; }
echo "$3" | tr , '\\n'
"""
SLURM_NODES = 2  # the batch script asks for 4 nodes; 2 "nodes" of 1 process show the same multi-node path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(ws: Path) -> dict[str, str]:
    """This checkout's code first; the test environment's `python` / `medflip` / `torchrun` and fakebin/ on PATH."""
    pp = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    path = os.pathsep.join([str(ws / "fakebin"), str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PYTHONPATH": pp, "PATH": path}


def check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def bash(line: str, ws: Path, env: dict[str, str], timeout: int = 600) -> None:
    check(
        subprocess.run(["bash", "-c", line], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)
    )


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """`A=1 B=2 cmd ...` -> ({A: 1, B: 2}, [cmd, ...])."""
    env = {}
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        k, _, v = words[0].partition("=")
        env[k] = v
        words = words[1:]
    return env, words


def and_parts(words: list[str]) -> list[list[str]]:
    out, cur = [], []
    for w in words:
        if w == "&&":
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    return [*out, cur]


def with_extras(part: list[str], extra_flags) -> list[str]:
    """Extra flags after the first `medflip` (or `.venv/bin/medflip`) word of a shell command."""
    i = next((k for k, w in enumerate(part) if Path(w).name == "medflip"), None)
    return part if i is None else part + extra_flags(part[i + 1 :])


def ci_line() -> str:
    """The README set-up line .ci/run runs verbatim ('' when there is no .ci/run)."""
    ci = ROOT / ".ci" / "run"
    lines = ci.read_text().splitlines() if ci.is_file() else []
    return next((ln.strip() for ln in lines if ln.startswith("python3 -m venv")), "")


def run_venv_line(text: str, ws: Path, extra_flags) -> str:
    """`python3 -m venv .venv && .venv/bin/pip install -e ... && .venv/bin/X`, offline, in the workspace (a copy
    of this checkout's pyproject.toml / README.md / src). Returns a note when a part is CI's own step."""
    import setuptools

    version = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    assert version >= (70, 1), f"setuptools {setuptools.__version__}: the [test] extra asks for >= 70.1"
    purelib = sysconfig.get_paths()["purelib"]
    env = {
        **base_env(ws),
        "PYTHONPATH": purelib,  # the dependencies, already installed; their .pth files (an editable medflip) unread
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling of --no-build-isolation as a variable
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    note = ""
    for part in and_parts(shlex.split(text)):
        if part == [".venv/bin/pytest"]:
            # the whole test suite (this test included): CI's test step runs exactly this line
            same = shlex.split(text) == shlex.split(ci_line())  # the same words as the shell reads them
            assert same, f".ci/run no longer runs {text!r} (it runs {ci_line()!r})"
            note = "its `.venv/bin/pytest` (the whole suite, this test included) is CI's own step: .ci/run runs the line verbatim"
            continue
        bash(shlex.join(with_extras(part, extra_flags)), ws, env)
    assert (ws / ".venv/bin/medflip").is_file()
    return note


def run_shell(text: str, ws: Path, extra_flags, extra_env: dict[str, str]) -> None:
    env, words = split_env(shlex.split(text))
    full = {**base_env(ws), **extra_env, **env}
    for part in and_parts(words):
        bash(shlex.join(with_extras(part, extra_flags)), ws, full)


def _torchrun_flags(args: list[str], endpoint: str) -> list[str]:
    """One process per node, the rendezvous at `endpoint`."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        key = a.split("=")[0]
        if key in ("--nproc_per_node", "--nproc-per-node", "--rdzv-endpoint", "--rdzv_endpoint"):
            value = "1" if "nproc" in key else endpoint
            out += [key, value]
            i += 1 if "=" in a else 2
            continue
        out.append(a)
        i += 1
    return out


def run_multinode_torchrun(words: list[str], ws: Path, extras: list[str]) -> None:
    """Every node of `torchrun --nnodes N ...` started here, each the documented line with the endpoint local."""
    nnodes = next((w.split("=")[1] for w in words if w.startswith("--nnodes=")), None)
    if "--nnodes" in words:
        nnodes = words[words.index("--nnodes") + 1]
    n = int(str(nnodes).split(":")[-1])
    args = _torchrun_flags(words[1:], f"127.0.0.1:{free_port()}")
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, *extras, "--train.device", "cpu"]
    procs = [
        subprocess.Popen(
            cmd, cwd=ws, env=base_env(ws), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(n)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, f"a node exited {p.returncode}\n{out[-4000:]}"
    assert any(f"pretrain: {n} processes" in out for out in outs), "no node reports the group of all nodes"


def run_slurm_script(text: str, ws: Path, extra_flags) -> None:
    """The batch script itself under a stand-in srun/scontrol: SLURM_NNODES nodes on this machine."""
    fake = ws / "fakebin"
    fake.mkdir(exist_ok=True)
    for name, body in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (fake / name).write_text(body)
        (fake / name).chmod(0o755)
    script = text.replace("\\\n", " ").replace("/shared/", f"{ws}/").replace(":29500", f":{free_port()}")
    lines = []
    for line in script.splitlines():
        if re.search(r"\btorchrun\b", line):
            line = re.sub(r"--nproc[_-]per[_-]node[ =]\d+", "--nproc_per_node 1", line)
            words = shlex.split(line)
            argv = words[words.index("pretrain") :] if "pretrain" in words else []
            line += " " + shlex.join([*extra_flags(argv), "--train.device", "cpu"])
        lines.append(line)
    path = ws / "slurm_job.sh"
    path.write_text("\n".join(lines) + "\n")
    nodes = ",".join(["127.0.0.1"] * SLURM_NODES)
    env = {
        **base_env(ws),
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": str(SLURM_NODES),
        "SLURM_JOB_NUM_NODES": str(SLURM_NODES),
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_NODELIST": nodes,
    }
    proc = subprocess.run(["bash", str(path)], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    check(proc)
    assert f"pretrain: {SLURM_NODES} processes" in proc.stdout + proc.stderr, (
        "the nodes did not form one group"
    )


def run_serve(words: list[str], ws: Path, entry_point: list[str], image: Path) -> None:
    """`medflip serve ...` on a free port: wait until the page answers, POST one image to /api/analyze, stop."""
    port = free_port()
    extras = ["--port", str(port), "--corpus", "reports.csv", "--cache-dir", str(ws / "serve-cache")]
    log = (ws / "serve.log").open("w")
    proc = subprocess.Popen(
        [*entry_point, *words[1:], *extras], cwd=ws, env=base_env(ws), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (
                f"medflip serve exited {proc.returncode}:\n{(ws / 'serve.log').read_text()[-3000:]}"
            )
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "medflip serve did not answer within 180 s"
            time.sleep(0.5)
        req = urllib.request.Request(url + "/api/analyze", data=image.read_bytes(), method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200
            answer = json.loads(r.read())
        cx5 = [c["probability"] for c in answer["chexpert5"]]
        assert len(cx5) == 5 and abs(sum(cx5) - 1) < 1e-2 and answer["sentences"], answer.keys()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

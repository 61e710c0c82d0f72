"""The `medflip` command: every subcommand has --help; errors are one clear line."""

import subprocess
import sys

import pytest

from medflip.cli import main

COMMANDS = [
    [],
    ["demo"],
    ["pretrain"],
    ["bench"],
    ["eval"],
    ["eval", "zeroshot"],
    ["eval", "retrieval"],
    ["eval", "probe"],
    ["eval", "finetune"],
    ["eval", "efficiency"],
    ["label"],
    ["label-eval"],
    ["label-bench"],
    ["data"],
    ["data", "import"],
    ["data", "cache"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "medflip")
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: medflip" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "medflip.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "medflip" in out.stdout


def test_pretrain_errors_are_one_line(tmp_path, capsys):
    assert main(["pretrain", "--train.out", str(tmp_path)]) == 2
    assert "pass --data.cache" in capsys.readouterr().err


def test_unknown_config_key_in_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  stepz: 1\n")
    assert main(["pretrain", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) train.stepz" in err and "valid keys here" in err


def test_eval_rejects_non_model_folder(tmp_path, capsys):
    assert main(["eval", "zeroshot", "--model", str(tmp_path), "--cache", str(tmp_path)]) == 2
    assert "not a medflip model folder" in capsys.readouterr().err


def test_each_module_registers_exactly_its_commands():
    """cli.COMMANDS (what `medflip --help` lists without importing anything) matches what the modules register."""
    import argparse
    import importlib

    from medflip.cli import COMMAND_MODULES, COMMANDS

    assert set(COMMAND_MODULES) == {m for m, _ in COMMANDS.values()}
    for module in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert set(sub.choices) == {c for c, (m, _) in COMMANDS.items() if m == module}, module


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_label_command_does_not_import_torch(tmp_path):
    """`medflip label` (and its --help, and `medflip --help`) run without importing torch."""
    reports = tmp_path / "r.csv"
    reports.write_text("id,text\n1,No pneumothorax.\n", encoding="utf-8")
    out = tmp_path / "labels.csv"
    code = (
        "import sys, contextlib, io\n"
        "from medflip.cli import main\n"
        "for argv in (['--help'], ['label', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        f"assert main(['label', {str(reports)!r}, '--out', {str(out)!r}, '--no-progress']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'transformers')))\n"
    )
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert out.read_text().splitlines()[1].startswith("1,")


def test_broken_command_module_fails_loudly(monkeypatch):
    """A command whose module cannot be imported is an error, not a silently missing command."""
    import medflip.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "broken", ("medflip.no_such_module", "a command still being written"))
    with pytest.raises(ModuleNotFoundError):
        main(["broken", "--help"])
    # other commands are unaffected (the broken module is only imported when its command is run)
    with pytest.raises(SystemExit) as e:
        main(["label", "--help"])
    assert e.value.code == 0

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

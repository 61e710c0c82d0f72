"""Configs: files, flag overrides, unknown keys listed, types checked."""

import argparse

import pytest

from medflip.config import add_config_flags, config_from_args, load_config
from medflip.errors import UserError
from medflip.train.config import PretrainConfig


def test_defaults_and_yaml_and_overrides(tmp_path):
    cfg = load_config(PretrainConfig)
    assert cfg.model.vision.size == "small" and cfg.loss.beta_svd == 0.1 and cfg.train.mask_ratio == 0.5
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  vision:\n    size: tiny\ntrain:\n  steps: 7\n  mask_ratio: 0.75\n")
    cfg = load_config(PretrainConfig, path, {"train.steps": "9", "data.augment_cfg.scale": "0.5,1.0"})
    assert cfg.model.vision.size == "tiny" and cfg.train.mask_ratio == 0.75
    assert cfg.train.steps == 9 and cfg.data.augment_cfg.scale == (0.5, 1.0)


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  stepz: 3\n")
    with pytest.raises(UserError) as e:
        load_config(PretrainConfig, path)
    assert "train.stepz" in str(e.value) and "steps" in str(e.value) and "mask_ratio" in str(e.value)
    with pytest.raises(UserError, match="unknown config key"):
        load_config(PretrainConfig, None, {"modle.embed_dim": 3})


def test_bad_values_are_clear():
    with pytest.raises(UserError, match="train.steps"):
        load_config(PretrainConfig, None, {"train.steps": "many"})
    with pytest.raises(UserError, match="data.augment"):
        load_config(PretrainConfig, None, {"data.augment": "perhaps"})
    with pytest.raises(UserError, match="not found"):
        load_config(PretrainConfig, "/nonexistent.yaml")


def test_flags_from_dataclass():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, PretrainConfig)
    args = parser.parse_args(["--train.steps", "5", "--model.vision.size", "base", "--loss.lambda_neg", "0"])
    cfg = config_from_args(PretrainConfig, args)
    assert cfg.train.steps == 5 and cfg.model.vision.size == "base" and cfg.loss.lambda_neg == 0.0

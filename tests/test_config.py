"""Configs: files, flag overrides, unknown keys listed, types checked."""

import argparse
import re

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


def test_a_config_with_its_own_section_defaults_keeps_them_when_one_key_is_set(tmp_path):
    """A derived config (as the demo's) sets other defaults for a section; setting one key of that section
    by flag or file keeps the derived defaults of the others, and --help shows the derived defaults."""
    from dataclasses import dataclass, field

    from medflip.train.config import TrainConfig

    @dataclass
    class Derived(PretrainConfig):
        train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=7, seed=3))

    cfg = load_config(Derived, None, {"train.seed": 5, "model.vision.image_size": 32})
    assert (cfg.train.steps, cfg.train.seed, cfg.train.out) == (7, 5, TrainConfig().out)
    assert cfg.model.vision.image_size == 32 and cfg.model.vision.size == PretrainConfig().model.vision.size
    (tmp_path / "c.yaml").write_text("train:\n  log_every: 2\n")
    assert load_config(Derived, tmp_path / "c.yaml").train.steps == 7
    p = argparse.ArgumentParser()
    add_config_flags(p, Derived)
    assert re.search(r"--train\.steps V\s+default: 7\n", p.format_help())


def test_resolved_config_builds_the_heads_its_losses_need():
    cfg = PretrainConfig()
    cfg.loss.recon_weight = 0.5
    cfg.train.text_mask_ratio = 0.15
    cfg.loss.mlm_weight = 1.0
    r = cfg.resolved()
    assert r.model.reconstruction_decoder and r.model.mlm_head
    assert not cfg.model.reconstruction_decoder  # a copy: the caller's config is untouched
    assert r.resolved() == r  # idempotent
    plain = PretrainConfig().resolved()
    assert not plain.model.reconstruction_decoder and not plain.model.mlm_head


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"loss.recon_weight": 1.0, "train.mask_ratio": 0.0}, "mask_ratio"),
        ({"loss.mlm_weight": 1.0}, "text_mask_ratio"),
        ({"loss.targets": "identity", "data.texts": "iu"}, "paired"),
        ({"loss.targets": "soft"}, "labels"),
        ({"train.mask_ratio": 1.0}, "mask_ratio"),
    ],
)
def test_resolved_config_refuses_terms_that_could_never_run(changes, match):
    cfg = load_config(PretrainConfig, None, changes)
    with pytest.raises(UserError, match=match):
        cfg.resolved()


def test_identity_targets_with_paired_data_resolve():
    cfg = load_config(PretrainConfig, None, {"loss.targets": "identity", "data.texts": "paired"})
    assert cfg.resolved().loss.targets == "identity"


def test_pretrain_refuses_a_model_without_the_weighted_head(tmp_path):
    from medflip.train.loop import check_model_matches

    cfg = PretrainConfig()
    cfg.loss.recon_weight = 1.0

    class NoHeads:
        decoder = None
        mlm = None

    with pytest.raises(UserError, match="reconstruction decoder"):
        check_model_matches(NoHeads(), cfg)


def test_resolve_device_follows_local_rank(monkeypatch):
    import torch

    from medflip.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)
    assert resolve_device("cuda") == torch.device("cuda", 3)  # a bare "cuda" under torchrun: this rank's GPU
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # explicit: as given
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_attention_setting_is_checked():
    """train.attention is a config key (a run's config.json replays it): a typo is an error, not a default."""
    import torch

    from medflip.runtime import attention_kernel

    with pytest.raises(UserError, match="train.attention"):
        attention_kernel("flash", torch.device("cpu"))
    with attention_kernel("math", torch.device("cpu")), attention_kernel("auto", torch.device("cpu")):
        q = torch.randn(1, 1, 3, 4)
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    ref = torch.softmax(q @ q.transpose(-1, -2) / 2, -1) @ q  # plain attention by hand, scale 1/sqrt(4)
    assert torch.allclose(out, ref, atol=1e-6)

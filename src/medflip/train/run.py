"""One way to build a run from a PretrainConfig: the batches (`medflip.data.build_batches`), the model, the seed,
`pretrain()` and the model card. `medflip pretrain` and `medflip demo` both call `train_from_config`, so a
run folder's config.json retrains it: `medflip pretrain --config RUN/config.json --train.out OTHER`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medflip.data.sources import build_batches
from medflip.errors import UserError
from medflip.model.medflip import MedFLIP
from medflip.model.preprocess import PreprocessConfig
from medflip.runtime import resolve_device
from medflip.train.card import write_model_card
from medflip.train.config import PretrainConfig
from medflip.train.distributed import is_main_process
from medflip.train.loop import pretrain


def cache_meta(cache_dir: str) -> dict:
    """The cache's meta.json (size, resize policy, manifest sha256, split counts)."""
    path = Path(cache_dir) / "meta.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{cache_dir} is not a medflip image cache ({path}: {e})") from e


def cache_preprocessing(cache_dir: str) -> PreprocessConfig:
    """How the training images were prepared (cache size + resize policy), for the model's config.json."""
    meta = cache_meta(cache_dir)
    return PreprocessConfig(
        cache_size=int(meta["size"]), resize=str(meta.get("resize", "fit-longer-side-pad-black"))
    )


def train_from_config(
    cfg: PretrainConfig,
    *,
    resume: bool | str | Path = False,
    progress: bool = True,
    overwrite: bool = False,
    validate=None,
) -> tuple[Path, MedFLIP]:
    """Pre-train the run `cfg` describes; returns (run folder, trained model).

    The order is part of the run's identity (it fixes the random numbers): batches from cfg.data, then
    torch.manual_seed(train.seed), then the model's initial weights. validate: see `pretrain`.
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.train.device)
    batches = build_batches(cfg, device)
    torch.manual_seed(cfg.train.seed)
    model = MedFLIP(cfg.model)
    model.preprocess_cfg = cache_preprocessing(
        cfg.data.cache
    )  # saved in config.json: medflip.load replays it
    run = pretrain(
        model, batches, cfg, resume=resume, progress=progress, validate=validate, overwrite=overwrite
    )
    if is_main_process() and (run / "model" / "config.json").is_file():  # rank 0 alone writes the card
        meta = cache_meta(cfg.data.cache)
        data = {
            "cache": cfg.data.cache,
            "split": cfg.data.split,
            "images": meta.get("splits", {}).get(cfg.data.split, "?"),
            "manifest_sha256": meta.get("manifest_sha256", "unknown"),
            "texts": cfg.data.texts,
        }
        write_model_card(run / "model", cfg, run, data)
    return run, model

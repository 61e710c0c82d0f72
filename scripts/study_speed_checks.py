"""Speed levers of the CPU study (docs/reproduction.md): bf16 autocast and the locked, memoised text tower.

1. fp32 vs bf16 autocast: same seed, same batches, 40 MedFLIP steps (mask 0.5 + SVD) of ViT-Ti/16 at 128 px,
   batch 32, one thread: CPU seconds per step and the loss of every step (does bf16 change the result?).
2. Text tower per step, batch of 32 report sentences: locked + memoised (freeze_layers 6) vs trainable
   (freeze_layers 0, forward + backward).
Writes OUT/speed_checks.json (read by `medflip study report`). Usage:
  OMP_NUM_THREADS=1 python scripts/study_speed_checks.py runs/study
"""

import importlib
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from medflip.losses import MedFLIPObjective
from medflip.model.medflip import MedFLIP, ModelConfig
from medflip.model.text import TextConfig
from medflip.train.config import PretrainConfig
from medflip.train.loop import build_optimizer
from medflip.train.step import TrainingForward, train_step_losses

build_batches = importlib.import_module("medflip.train.cli").build_batches  # the pretrain command's data
out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study")
torch.set_num_threads(1)
res: dict = {"precision": {}, "text_tower": {}}
for prec in ("fp32", "bf16"):
    cfg = PretrainConfig()
    cfg.data.cache, cfg.data.texts, cfg.data.batch_size = str(out_dir / "cache128"), str(out_dir / "texts_train.csv"), 32
    cfg.model.vision.size, cfg.model.vision.image_size, cfg.model.text.freeze_layers = "tiny", 128, 6
    cfg.train.precision = prec
    batches = build_batches(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    model = MedFLIP(cfg.model).train()
    opt = build_optimizer(model, cfg.optim)
    forward, objective = TrainingForward(model), MedFLIPObjective(cfg.loss)
    losses, cpu = [], 0.0
    for s in range(40):
        t = time.process_time()
        torch.manual_seed(1000 + s)  # the same patch masks in both precisions
        result = train_step_losses(forward, objective, batches.batch(s), cfg, 0.5, s)
        opt.zero_grad()
        result.loss.backward()
        opt.step()
        cpu += time.process_time() - t
        losses.append(round(float(result.loss.detach()), 4))
    res["precision"][prec] = {"cpu_s_per_step": round(cpu / 40, 3), "losses": losses}
    print(prec, res["precision"][prec]["cpu_s_per_step"], losses[-5:], flush=True)
sents = pd.read_csv(out_dir / "retrieval_pool.csv")["sentence"].tolist()[:32]
for fl in (6, 0):
    m = MedFLIP(ModelConfig(text=TextConfig(freeze_layers=fl))).train()
    enc = m.tokenize(sents)
    ts = []
    for _ in range(6):
        t = time.process_time()
        pooled, _ = m.text(enc["input_ids"], enc["attention_mask"])
        if fl == 0:
            pooled.sum().backward()
        ts.append(time.process_time() - t)
    res["text_tower"][f"freeze_layers_{fl}"] = round(sum(ts[2:]) / 4, 4)
    print(f"text tower freeze_layers={fl}: {res['text_tower'][f'freeze_layers_{fl}']} CPU s per step", flush=True)
(out_dir / "speed_checks.json").write_text(json.dumps(res, indent=2))

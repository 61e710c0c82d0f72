#!/usr/bin/env bash
# One short script for a lent GPU machine (never part of CI): checks and measures everything CUDA-specific.
#   bash scripts/gpu_check.sh [OUT_DIR]        (~5 minutes on one H100; needs the project installed)
# 1. the CUDA test subset: bf16 autocast step, SDPA (flash/mem-efficient) kernels selected, device-side masking;
# 2. with 2+ GPUs: a 2-GPU torchrun pretrain over NCCL (bf16, every loss term)
#    against the same run on 1 GPU (per-step losses printed side by side; bf16 agrees to ~1e-2, fp32 to 1e-5);
# 3. medflip bench on the GPU: ViT-B/16 and ViT-S/16 at 224 px, batch 256, mask 0 / 0.5 / 0.75, bf16, with MFU;
# 4. medflip bench --objective: per-rank objective cost at global batch 256 / 1,024 / 4,096, world 1 / 2 / 8.
set -euo pipefail
OUT=${1:-gpu_check}
mkdir -p "$OUT"
python - <<'PY' 2>&1 | tee "$OUT/cuda_checks.txt"
import torch, time
from torch.nn.attention import SDPBackend, sdpa_kernel
from medflip.model.medflip import MedFLIP, ModelConfig
from medflip.model.vision import VisionConfig
from medflip.train.config import PretrainConfig
from medflip.losses import MedFLIPObjective
from medflip.train.loop import build_optimizer
from medflip.train.step import TrainingForward, train_step_losses
from medflip.data.streams import Batch
assert torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cuda")
print("device:", torch.cuda.get_device_name(dev), "torch", torch.__version__)
pc = PretrainConfig(model=ModelConfig(vision=VisionConfig(size="small", image_size=224)))
model = MedFLIP(pc.model).to(dev).train()
opt = build_optimizer(model, pc.optim)
b = 64
batch = Batch(images=torch.randn(b, 1, 224, 224, device=dev), image_labels=(torch.rand(b, 14) < 0.2).float(),
              texts=["mild cardiomegaly with small bilateral pleural effusions"] * b,
              text_labels=(torch.rand(b, 14) < 0.2).float(), image_index=None)
# Flash attention only: raises if the ViT's attention cannot use it under bf16 autocast.
with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
    result = train_step_losses(TrainingForward(model), MedFLIPObjective(pc.loss), batch, pc, 0.5, 0)
print("bf16 step with flash SDPA: loss", result.terms["loss"], "finite:", bool(torch.isfinite(result.loss)))
result.loss.backward(); opt.step()
# masking noise and indices live on the GPU (no host sync inside the forward)
_, _, ids = model.vision(batch.images, 0.5)
print("ids_keep device:", ids.device)
PY
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  export PYTHONPATH="$PWD/tests:${PYTHONPATH:-}"
  python tests/dist_worker.py "$OUT/run1:local:cuda"
  torchrun --standalone --nproc_per_node 2 tests/dist_worker.py "$OUT/run2:local:cuda" 2>&1 | tee "$OUT/ddp_torchrun.txt"
  python - "$OUT" <<'PY' 2>&1 | tee -a "$OUT/ddp_torchrun.txt"
import json, sys
out = sys.argv[1]
one, two = (json.load(open(f"{out}/{r}/losses.json")) for r in ("run1", "run2"))
for s in sorted(one, key=int):
    print(f"step {s}: 1 GPU {one[s]['loss']:.5f}  2 GPUs {two[s]['loss']:.5f}")
PY
fi
for vit in small base; do
  medflip bench --model.vision.size "$vit" --data.batch_size 256 --steps 10 --warmup 3 --json "$OUT/bench_$vit.json" | tee "$OUT/bench_$vit.txt"
done
medflip bench --objective --steps 3 --json "$OUT/bench_objective.json" | tee "$OUT/bench_objective.txt"

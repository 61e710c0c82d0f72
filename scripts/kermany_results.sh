#!/usr/bin/env bash
# Real-data results on the Kermany paediatric pneumonia training split (docs/results.md).
# Pre-trains on a patient-disjoint train split with the IU report sentences as the (decoupled) text corpus,
# evaluates zero-shot pneumonia vs normal. Usage: scripts/kermany_results.sh STAGE [MINUTES]
#   STAGE = data | tau | methods | data-efficiency | balance ; MINUTES = wall-clock budget per run (default 5)
# Environment: KERMANY_ROOT (the images; default ../shared/data/kermany-pneumonia), OUT (default runs/kermany),
#   TAU (methods / data-efficiency), PRETRAIN_FLAGS (extra `medflip pretrain` flags appended to every run; the
#   last value of a flag wins, e.g. PRETRAIN_FLAGS="--train.steps 2 --train.time_budget_min 0" for a smoke run,
#   as tests/test_recipes.py does with a tiny model).
set -euo pipefail
ROOT=${KERMANY_ROOT:-../shared/data/kermany-pneumonia}
OUT=${OUT:-runs/kermany}
MIN=${2:-5}
# CPU-sized model: ViT-Ti/16 at 64 px from scratch, locked MiniLM text tower (memoised), batch 64.
COMMON=(--data.cache "$OUT/cache128" --data.texts iu --data.batch_size 64
        --model.vision.size tiny --model.vision.image_size 64 --model.text.freeze_layers 6
        --optim.lr 3e-4 --optim.warmup_steps 50 --train.steps 100000 --train.time_budget_min "$MIN"
        --train.ckpt_every 100 --train.log_every 10 --no-progress)
if [ -n "${PRETRAIN_FLAGS:-}" ]; then read -ra extra <<< "$PRETRAIN_FLAGS"; COMMON+=("${extra[@]}"); fi
zeroshot() {  # run split
  medflip eval zeroshot --model "$1/model" --cache "$OUT/cache128" --split "$2" --task binary \
    --positive Pneumonia --out "$1/eval_$2" --json "$1/eval_$2/zeroshot.json"
}
case "$1" in
  data)
    medflip data import kermany --root "$ROOT" --out "$OUT/manifest.csv"
    medflip data split "$OUT/manifest.csv" --fractions 0.7,0.15,0.15 --seed 0 --overwrite
    medflip data cache "$OUT/manifest.csv" --size 128 --out "$OUT/cache128" ;;
  tau)  # soft-target temperature, chosen on the validation split
    for tau in 1.0 0.1 0.05; do
      medflip pretrain "${COMMON[@]}" --loss.tau_s "$tau" --train.out "$OUT/tau_$tau"
      zeroshot "$OUT/tau_$tau" val
    done ;;
  methods)  # equal wall-clock: MedFLIP, MedFLIP without SVD, the MedCLIP objective; reported on test
    TAU=${TAU:-0.1}
    medflip pretrain "${COMMON[@]}" --loss.tau_s "$TAU" --train.out "$OUT/medflip"
    medflip pretrain "${COMMON[@]}" --loss.tau_s "$TAU" --loss.beta_svd 0 --train.out "$OUT/medflip_nosvd"
    medflip pretrain "${COMMON[@]}" --loss.tau_s "$TAU" --loss.beta_svd 0 --train.mask_ratio 0 --train.out "$OUT/medclip"
    for run in medflip medflip_nosvd medclip; do zeroshot "$OUT/$run" test; done
    medflip eval efficiency --cache "$OUT/cache128" --split test --task binary --positive Pneumonia \
      --time-runs "MedFLIP=$OUT/medflip" "MedFLIP no SVD=$OUT/medflip_nosvd" "MedCLIP objective=$OUT/medclip" \
      --out "$OUT/efficiency" ;;
  data-efficiency)  # MedFLIP on 10/25/50/100% of the training images, equal budget each, scored on test
    TAU=${TAU:-1.0}
    runs=()
    for f in 0.1 0.25 0.5 1.0; do
      medflip pretrain "${COMMON[@]}" --loss.tau_s "$TAU" --data.fraction "$f" --train.out "$OUT/frac_$f"
      runs+=("$OUT/frac_$f")
    done
    medflip eval efficiency --cache "$OUT/cache128" --split test --task binary --positive Pneumonia \
      --data-runs "${runs[@]}" --out "$OUT/data_efficiency" ;;
  balance)  # class-balanced text stream (Pneumonia / No Finding sentences) vs the plain IU stream, on val
    medflip pretrain "${COMMON[@]}" --train.out "$OUT/bal_base"
    medflip pretrain "${COMMON[@]}" --data.balance_text 1000 --data.balance_classes "Pneumonia,No Finding" \
      --train.out "$OUT/bal_pn"
    for run in bal_base bal_pn; do zeroshot "$OUT/$run" val; done ;;
  *) echo "usage: $0 data|tau|methods|data-efficiency|balance [MINUTES]"; exit 2 ;;
esac

#!/usr/bin/env bash
# Trains the shipped speech checkpoint and the SOI comparison models, then evaluates them.
# This is how src/soi/assets/speech_small_stmc.pt and the table in docs/speech.md were made:
#   bash benchmarks/train_speech_models.sh [DATA_DIR] [RUNS_DIR] [STEPS]
# Two models train at a time, one thread each (a 2-core machine); every model gets the same
# number of steps, data, seed and hyper-parameters, so only the SOI pattern differs.
set -euo pipefail
data=${1:-/work/data/train60}
runs=${2:-/work/runs}
steps=${3:-1045}
python3 -m soi generate "$data" --minutes 60 --seed 0
train() {  # pattern
  local name; name=$(echo "$1" | tr -d ' ' | tr 'A-Z' 'a-z')
  OMP_NUM_THREADS=1 python3 -m soi train --data "$data" --out "$runs/$name" --pattern "$1" \
    --batch-size 8 --segment-seconds 2 --lr 1e-3 --steps "$steps" --valid-every 150 --seed 0 --no-progress
}
train "STMC" & train "S-CC 2" & wait
train "S-CC 5" & train "SS-CC 5" & wait
python3 -m soi evaluate --data "$data" --split test \
  --checkpoint "$runs/stmc/best.pt" --checkpoint "$runs/s-cc5/best.pt" \
  --checkpoint "$runs/s-cc2/best.pt" --checkpoint "$runs/ss-cc5/best.pt" \
  --json "$runs/evaluation.json"
cp "$runs/stmc/best.pt" src/soi/assets/speech_small_stmc.pt

#!/usr/bin/env bash
# Trains the speech model that soi ships (the medium U-Net, STMC, bounded mask, compressed spectral
# loss) on the default real-voice data set, in sittings: every call trains MINUTES more, resuming
# from training/speech-medium-stmc/last.pt, which is committed with its log between sittings (a
# few MB), so the run continues on any machine. The data set is rebuilt from its seed when absent
# (the same files: `soi generate` is deterministic) and reused when complete.
#   bash benchmarks/train_speech_models.sh [MINUTES] [DATA_DIR] [THREADS]
# When the validation curve has flattened (docs/speech.md), best.pt becomes
# src/soi/assets/speech_medium_stmc.pt; the SOI patterns are then fine-tuned from it (--init-from).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
data=${2:-/work/data/speech-v2}
threads=${3:-2}
run=training/speech-medium-stmc
python3 -m soi generate "$data" --minutes 180 --seed 0 --quiet
OMP_NUM_THREADS=$threads python3 -m soi train --data "$data" --out "$run" \
  --model-config src/soi/assets/unet_medium.json --pattern STMC --mask-bound tanh --loss compressed-spectral \
  --batch-size 8 --segment-seconds 2 --lr 1e-3 --lr-patience 4 --valid-every 250 --seed 0 \
  --minutes "$minutes" --no-progress

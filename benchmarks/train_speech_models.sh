#!/usr/bin/env bash
# Trains the speech model that soi ships (the medium U-Net, STMC, bounded mask, compressed spectral
# level-matched SI-SNR loss) on the default real-voice data set, in sittings: every call trains MINUTES
# more (soi train's --minutes is the run's total over its resumes, so the call adds MINUTES to the
# time the log already holds), resuming from training/speech-medium-stmc-level/last.pt, which is committed with its log between sittings
# (a few MB), so the run continues on any machine. The data set is rebuilt from its seed when absent
# (the same files: `soi generate` is deterministic) and reused when complete.
#   bash benchmarks/train_speech_models.sh [MINUTES] [DATA_DIR] [THREADS]
# Its history, all compressed spectral loss until this run: training/speech-medium-stmc (68 min, no
# remixing; best.pt at step 1000), training/speech-medium-stmc-remix (from that best.pt with half of
# the crops remixed, --remix 0.5; best.pt at step 750), training/speech-soi/stmc-fine-tuned (500 steps
# more), then this run from that best.pt with --loss si-snr-level (best.pt at step 1600 of the first
# sitting, 5000 of the second). Its best.pt is src/soi/assets/speech_medium_stmc.pt; the SOI patterns are fine-tuned from
# it by benchmarks/speech_soi.py (--init-from).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
data=${2:-/work/data/speech-v2}
threads=${3:-2}
run=training/speech-medium-stmc-level
python3 -m soi generate "$data" --minutes 180 --seed 0 --quiet
done_s=$(tail -n 1 "$run/log.csv" 2>/dev/null | cut -d, -f5 | grep -E '^[0-9.]+$' || echo 0)
total=$(python3 -c "print(round($done_s / 60 + $minutes, 1))")
OMP_NUM_THREADS=$threads python3 -m soi train --data "$data" --out "$run" \
  --model-config src/soi/assets/unet_medium.json --pattern STMC --mask-bound tanh --loss si-snr-level \
  --init-from training/speech-soi/stmc-fine-tuned/best.pt --remix 0.5 \
  --batch-size 8 --segment-seconds 2 --lr 1e-3 --lr-patience 3 --valid-every 200 --seed 2 \
  --minutes "$total" --no-progress

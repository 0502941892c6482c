#!/usr/bin/env bash
# Reproduce the committed reference Segmenter (assets/model/segmenter.pt + .json), stage by stage.
# Each stage continues from the previous stage's weights (kept in .cache/stageN) with a fresh
# warm-up + cosine cycle. Then re-export the ONNX / torch.export files.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ISEG_CACHE:-.cache}"

stage_done() {  # keep a copy of the weights a stage produced
    mkdir -p "$cache/stage$1"
    cp assets/model/segmenter.pt assets/model/segmenter.json "$cache/stage$1/"
}

python -m segmenter.train --threads 1
stage_done 1
python -m segmenter.train --threads 1 --epochs 3 --lr 1e-3 --warmup-steps 100 --init-from "$cache/stage1/segmenter.pt"
stage_done 2
python -m segmenter.train --threads 1 --epochs 3 --lr 7e-4 --warmup-steps 50 --init-from "$cache/stage2/segmenter.pt"
stage_done 3
# stage 4 was stopped after 2 of its 5 planned epochs (the machine was needed); --stop-after replays that
python -m segmenter.train --threads 1 --epochs 5 --stop-after 2 --lr 1e-3 --warmup-steps 100 --init-from "$cache/stage3/segmenter.pt"
stage_done 4
python -m segmenter.train --threads 1 --epochs 6 --lr 7e-4 --warmup-steps 50 --init-from "$cache/stage4/segmenter.pt"
stage_done 5
python -m segmenter.export
python -m segmenter.tflite_export
python -m segmenter.evaluate

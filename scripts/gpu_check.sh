#!/usr/bin/env bash
# GPU readiness check (under 3 minutes on one GPU): images/s of a ResNet-50 fine-tune at 224 px through the harness
# (trainer=gpu settings: bf16-mixed, channels_last) against a plain PyTorch loop. Without a GPU: a CPU dry run.
source "$(dirname "$0")/_env.sh"
python -m benchmark.gpu_check "$@"

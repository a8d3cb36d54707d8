#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: NNODES=2 NODE_RANK=0|1 MASTER_ADDR=host0 tools/dist_train.sh CONFIG GPUS_PER_NODE ...
# PYTHON picks the interpreter (default: python). On a machine without CUDA each process trains on
# CPU with the gloo backend.
exec bash "$(dirname "$0")/dist_launch.sh" "$2" "$(dirname "$0")/train.py" "$1" --launcher pytorch "${@:3}"

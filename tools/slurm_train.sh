#!/usr/bin/env bash
# Distributed training under Slurm, with the arguments of mmdet's tools/slurm_train.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# Each task runs tools/train.py --launcher slurm; the first host of the job is the master, at MASTER_PORT
# (default 29500). PYTHON picks the interpreter (default: python). On nodes without CUDA each task trains on
# CPU with the gloo backend.
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" "$(dirname "$0")/train.py" "$3" --work-dir="$4" \
    --launcher=slurm "${@:5}"

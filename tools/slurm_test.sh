#!/usr/bin/env bash
# Distributed testing under Slurm, with the arguments of mmdet's tools/slurm_test.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# As tools/slurm_train.sh, with tools/test.py.
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" "$(dirname "$0")/test.py" "$3" "$4" --launcher=slurm "${@:5}"

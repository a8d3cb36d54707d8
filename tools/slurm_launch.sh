#!/usr/bin/env bash
# What slurm_train.sh and slurm_test.sh share: tools/slurm_launch.sh PARTITION JOB_NAME SCRIPT [script args]
# runs SCRIPT in GPUS Slurm tasks (srun), GPUS_PER_NODE per node, with CPUS_PER_TASK cores each; SRUN_ARGS adds
# srun options. PYTHON picks the interpreter (default: python).
PARTITION=$1
JOB_NAME=$2
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

# SRUN_ARGS is split into words on purpose: it holds several srun options.
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
    "${PYTHON:-python}" -u "${@:3}"

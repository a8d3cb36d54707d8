#!/usr/bin/env bash
# What dist_train.sh and dist_test.sh share: tools/dist_launch.sh PROCS_PER_NODE SCRIPT [script args]
# runs SCRIPT under torch.distributed.run (torchrun). Multi-node: NNODES, NODE_RANK, MASTER_ADDR,
# PORT. PYTHON picks the interpreter (default: python).
NPROC=$1
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROC" --master_port="$PORT" "${@:2}"

#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as for tools/dist_train.sh.
exec bash "$(dirname "$0")/dist_launch.sh" "$3" "$(dirname "$0")/test.py" "$1" "$2" --launcher pytorch "${@:4}"

#!/usr/bin/env bash
# Multi-node GRPO launch: `srun --ntasks-per-node 1` starts this once per node of the SLURM allocation; each copy
# starts one accelerate process group (DeepSpeed ZeRO-3) with its rank and the rendezvous address taken from
# SLURM's variables. Usage: accelerate_node.sh <accelerate config> <gpus per node> <python -m target and args...>
set -euo pipefail
config=$1
gpus_per_node=$2
shift 2
nodes=${SLURM_NNODES:?"SLURM_NNODES unset: run this under srun inside a SLURM allocation"}
rank=${SLURM_NODEID:?"SLURM_NODEID unset: run this under srun"}
nodelist=${SLURM_JOB_NODELIST:-${SLURM_NODELIST:?"SLURM_JOB_NODELIST unset"}}
head=$(scontrol show hostnames "$nodelist" | head -n 1)
port=${LOONGRL_MAIN_PORT:-29500}
echo "node rank $rank of $nodes, $gpus_per_node GPU(s) each, rendezvous $head:$port" >&2
exec accelerate launch --config_file "$config" --num_machines "$nodes" --machine_rank "$rank" \
    --num_processes "$((gpus_per_node * nodes))" --main_process_ip "$head" --main_process_port "$port" "$@"

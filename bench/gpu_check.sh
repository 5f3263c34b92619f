#!/usr/bin/env bash
# GPU check: CIFAR-shaped UG-CLU and oracle timings on a CUDA machine, in one short run (about 5 minutes).
# Usage: bash bench/gpu_check.sh [OUTDIR]   (OUTDIR defaults to $OUT, else bench/results/gpu)
# Needs the project's .venv; the data is random pixels in the real CIFAR-10 format (bench/fake_cifar10.py).
# A CPU dry run of the same pipeline: DEVICE=cpu TRAIN=500 MODEL=cnn EPOCHS=1 ITERS=10 bash bench/gpu_check.sh /tmp/x
DEVICE=${DEVICE:-cuda} TRAIN=${TRAIN:-10000} MODEL=${MODEL:-resnet18_cifar} EPOCHS=${EPOCHS:-5} ITERS=${ITERS:-300}
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/results/gpu}}"
mkdir -p "$out"
py=.venv/bin/python
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} | tee "$out/env.txt"
$py bench/fake_cifar10.py "$data" --train "$TRAIN" --test $((TRAIN / 5))
# 3 requests: learn task 0, learn task 1, unlearn class 1; ResNet-18 (CIFAR stem), short budgets.
cat > "$data/gpu-check.yaml" <<YAML
name: gpu-check
device: $DEVICE
threads: 0
augment: true
dataset: {name: cifar10, root: $data}
model: {name: $MODEL}
oracle: {epochs: $EPOCHS, lr: 0.1, batch_size: 128, augment: true, cache_dir: $data/oracles}
scenario:
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - unlearn: {classes: [1]}
methods:
  ugclu: {epochs_per_learn: $EPOCHS, iters_per_unlearn: $ITERS, buffer_size: $((TRAIN / 5)), alpha0_unlearn: 1.0, beta_R: 0.01}
  finetune: {epochs_per_learn: $EPOCHS, iters_per_unlearn: $ITERS}
YAML
for method in ugclu finetune; do
  .venv/bin/clutune run --config "$data/gpu-check.yaml" --method "$method" --out "$out/$method" 2>&1 | tee "$out/$method.log"
done
$py - "$out" <<'PY'
import sys
import pyarrow.parquet as pq
out = sys.argv[1]
lines = ["| method | request | kind | seconds | samples | oracle seconds | oracle samples |", "|---|---|---|---|---|---|---|"]
for m in ("ugclu", "finetune"):
    for r in pq.read_table(f"{out}/{m}/results.parquet").to_pylist():
        lines.append(f"| {m} | {r['request']} | {r['kind']} | {r['seconds']:.2f} | {r['samples_processed']} | "
                     f"{r['oracle_seconds']:.2f} | {r['oracle_samples_processed']} |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

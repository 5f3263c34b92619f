#!/usr/bin/env bash
# GPU check: CIFAR-shaped cost and speed on one CUDA GPU, in one run planned to fit in 8 minutes (not yet run
# on a GPU: no timing of this script has been measured).
# Usage: bash bench/gpu_check.sh [OUTDIR]   (OUTDIR defaults to $OUT, else bench/results)
# Needs the project's .venv; the data is random pixels in the real CIFAR-10 format (bench/fake_cifar10.py).
# Writes into OUTDIR:
#   env.txt, gpu-runs/<method>/ and gpu-runs/summary.md  UG-CLU and finetune through 3 requests (ResNet-18), seconds
#                                                        and sample passes per request next to the oracle's
#   gpu-throughput.json  ResNet-18 training steps: fp32 vs bf16 + channels-last, each eager and compiled
#                        (images/s, compile seconds apart, peak memory)
#   gpu-oracle.json      one oracle retrain with the fast recipe (preset cifar10-fast-oracle), all FULL images
#   gpu-packed.json      aggregate images/s of 1 and 4 trials packed on the GPU, peak memory per trial
#   gpu-syncs.json       UG-CLU and ER learn requests under torch.cuda.set_sync_debug_mode("error")
#   packing.{md,json,png} oracles per second packed against one at a time, K = PACK_KS (bench/packing.py)
# Every gpu-*.json holds the machine's description (GPU name, driver, torch, CUDA).
# A CPU dry run of the same pipeline (on the CPU, FULL defaults to TRAIN, STEPS to 3, COMPILE to 0, FAST_EPOCHS to 1):
#   DEVICE=cpu TRAIN=500 MODEL=cnn EPOCHS=1 ITERS=10 bash bench/gpu_check.sh /tmp/x
DEVICE=${DEVICE:-cuda} TRAIN=${TRAIN:-10000} MODEL=${MODEL:-resnet18_cifar} EPOCHS=${EPOCHS:-5} ITERS=${ITERS:-300}
if [ "$DEVICE" = cpu ]; then
  FULL=${FULL:-$TRAIN} STEPS=${STEPS:-3} COMPILE=${COMPILE:-0} FAST_EPOCHS=${FAST_EPOCHS:-1} PACK_KS=${PACK_KS:-1,4}
fi
PACK_KS=${PACK_KS:-1,4,16,64}
FULL=${FULL:-50000} STEPS=${STEPS:-50} COMPILE=${COMPILE:-1} FAST_EPOCHS=${FAST_EPOCHS:-0}
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/results}}"
mkdir -p "$out/gpu-runs"
py=.venv/bin/python
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} | tee "$out/env.txt"
$py bench/fake_cifar10.py "$data/small" --train "$TRAIN" --test $((TRAIN / 5))
$py bench/fake_cifar10.py "$data/full" --train "$FULL" --test $((FULL / 5))
# 3 requests: learn task 0, learn task 1, unlearn class 1; ResNet-18 (CIFAR stem), short budgets.
cat > "$data/gpu-check.yaml" <<YAML
name: gpu-check
device: $DEVICE
threads: 0
augment: true
dataset: {name: cifar10, root: $data/small}
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
  .venv/bin/clutune run --config "$data/gpu-check.yaml" --method "$method" --out "$out/gpu-runs/$method" --overwrite \
    2>&1 | tee "$out/gpu-runs/$method.log"
done
$py - "$out/gpu-runs" <<'PY'
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
bench=(bench/gpu_bench.py --device "$DEVICE" --out "$out" --model "$MODEL" --steps "$STEPS")
$py "${bench[@]}" --mode throughput --root "$data/small" --compile "$COMPILE"
$py "${bench[@]}" --mode oracle --root "$data/full" --oracle-epochs "$FAST_EPOCHS"
$py "${bench[@]}" --mode packed --root "$data/small" --trials 4
$py "${bench[@]}" --mode syncs --root "$data/small"
$py bench/packing.py --device "$DEVICE" --threads 0 --ks "$PACK_KS" --repeats 3 --out "$out"
ls "$out"/gpu-*.json

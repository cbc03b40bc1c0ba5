#!/usr/bin/env bash
# The training engine's one GPU check (issue 5): GPU tests, then the reward-model and DPO
# throughput benchmarks (Tandem's path against plain TRL, random-weight SmolLM2-135M) on the
# GPU, printing ratio, samples/s and MFU; again with our side compiled; then profiles a few steps
# of each side. Budget: under 10 minutes, pip install included; the stages run in order of
# importance and write to $OUT as they go, so a timeout costs only the last ones.
#
# Prepare on the dev machine first:  bash bench/gpu_prepare.sh
# Device call:  run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpu-assets"], timeout_s=600)
# Logs land in $OUT: gpu_check.log (everything), gpu_tests.log, throughput_<method>.log,
# summary.json (one line per benchmark), profile/ (where a step's time goes, per side).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
started=$(date +%s)
stage() { echo "=== [$(( $(date +%s) - started ))s] $*"; }

stage "install carried wheels"
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 - <<'PY'
import importlib.metadata as m
import torch
print({p: m.version(p) for p in ("torch", "transformers", "trl", "peft", "accelerate", "datasets",
                                 "pyarrow", "tokenizers", "safetensors")})
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0), "bf16",
      torch.cuda.is_bf16_supported())
PY
set +e

stage "GPU tests (marker gpu)"
timeout 150 python3 -m pytest --confcutdir=tests/rlhf/training tests/rlhf/training -m gpu -q \
  -p no:django -p no:cacheprovider \
  2>&1 | tee "$OUT/gpu_tests.log"
echo "gpu tests exit: ${PIPESTATUS[0]}"

: > "$OUT/summary.json"
for method in reward dpo; do
  stage "throughput $method"
  timeout 150 python3 bench/train_throughput.py --method "$method" \
    --model random:.gpu-assets/smollm2-135m --data .gpu-assets/hh_harmless_dev_1024.jsonl \
    --pairs 1024 --steps 16 --batch-size 64 --max-length 512 2>&1 | tee "$OUT/throughput_$method.log"
  echo "throughput $method exit: ${PIPESTATUS[0]}"
  tail -n 1 "$OUT/throughput_$method.log" | grep '^{' >> "$OUT/summary.json" || true
done

# Our side compiled (compile_model): 32 steps (two passes over the pairs), the first 8 left out
# of both sides' figures so that compilation and recompiles for new lengths are not counted.
for method in reward dpo; do
  stage "throughput $method, ours compiled"
  timeout 200 python3 bench/train_throughput.py --method "$method" \
    --model random:.gpu-assets/smollm2-135m --data .gpu-assets/hh_harmless_dev_1024.jsonl \
    --pairs 1024 --steps 32 --warmup-steps 8 --batch-size 64 --max-length 512 --rounds 1 \
    --compile 2>&1 | tee "$OUT/throughput_${method}_compiled.log"
  echo "throughput $method compiled exit: ${PIPESTATUS[0]}"
  tail -n 1 "$OUT/throughput_${method}_compiled.log" | grep '^{' >> "$OUT/summary.json" || true
done

# Where a step's time goes, per side (torch.profiler over 4 steady steps): the device's busy
# share, host syncs per step, and the ops that took the time (profile/<method>_<side>.txt).
for method in reward dpo; do
  stage "profile $method"
  timeout 120 python3 bench/train_throughput.py --method "$method" \
    --model random:.gpu-assets/smollm2-135m --data .gpu-assets/hh_harmless_dev_1024.jsonl \
    --pairs 1024 --steps 8 --batch-size 64 --max-length 512 --profile "$OUT/profile" \
    > "$OUT/profile_$method.log" 2>&1
  echo "profile $method exit: $?"
done

stage "summary"
cat "$OUT/summary.json" "$OUT/profile/profile.jsonl"

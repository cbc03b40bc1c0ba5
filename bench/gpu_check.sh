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
# throughput_<method>_compiled.log, profile_<method>.log, summary.json (one line per benchmark),
# profile/ (where a step's time goes, per side).
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
# throughput LOG SECONDS ARGS...: the benchmark on the carried pairs and random SmolLM2-135M,
# batch 64, 512 tokens; its log in $OUT/LOG.log, its JSON line appended to summary.json.
throughput() {
  local log=$1 limit=$2
  shift 2
  timeout "$limit" python3 bench/train_throughput.py \
    --model random:.gpu-assets/smollm2-135m --data .gpu-assets/hh_harmless_dev_1024.jsonl \
    --pairs 1024 --batch-size 64 --max-length 512 "$@" 2>&1 | tee "$OUT/$log.log"
  echo "$log exit: ${PIPESTATUS[0]}"
  tail -n 1 "$OUT/$log.log" | grep '^{' >> "$OUT/summary.json" || true
}

for method in reward dpo; do
  stage "throughput $method"
  throughput "throughput_$method" 150 --method "$method" --steps 16
done

# Our side compiled (compile_model): 32 steps (two passes over the pairs), the first 8 left out
# of both sides' figures so that compilation and recompiles for new lengths are not counted.
for method in reward dpo; do
  stage "throughput $method, ours compiled"
  throughput "throughput_${method}_compiled" 200 --method "$method" --steps 32 --warmup-steps 8 \
    --rounds 1 --compile
done

# Where a step's time goes, per side (torch.profiler over 4 steady steps): the device's busy
# share, host syncs per step, and the ops that took the time (profile/<method>_<side>.txt).
# (Their summary lines say "profiled": the profiler slows the run they measure.)
for method in reward dpo; do
  stage "profile $method"
  throughput "profile_$method" 120 --method "$method" --steps 8 --profile "$OUT/profile"
done

stage "summary"
cat "$OUT/summary.json" "$OUT/profile/profile.jsonl"

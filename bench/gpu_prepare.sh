#!/usr/bin/env bash
# Prepare, on this machine, what bench/gpu_check.sh needs on the GPU machine (which has torch,
# transformers, peft and accelerate but no trl or datasets, and cannot reach a registry):
#   .whl/         wheels for Python 3.12: trl and the versions of its stack this repo is tested with
#   .gpu-assets/  SmolLM2-135M's config and tokenizer (no weights: the GPU bench uses random ones)
#                 and the first 1,024 HH-RLHF pairs the benchmark trains on
# Both are ignored by git and travel with `carry`. Then make the device call:
#   run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpu-assets"], timeout_s=600)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.gpu-assets/' "$exclude" 2>/dev/null || echo '/.gpu-assets/' >> "$exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"

PY=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl trl==1.16.0 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 \
  multiprocess==0.70.19

"$PY" - <<'PY'
import shutil
from pathlib import Path

from rlhf.training.base_models import ensure_smollm2

source = ensure_smollm2(Path("var/models"))
target = Path(".gpu-assets/smollm2-135m")
shutil.rmtree(target, ignore_errors=True)
target.mkdir(parents=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
             "generation_config.json"):
    if (source / name).is_file():
        shutil.copy(source / name, target / name)
PY
# The benchmark's pairs: the shared data folder (bench/shared_data.py) does not travel to the
# GPU machine.
head -n 1024 "$("$PY" bench/shared_data.py hh_harmless_dev.jsonl)" \
  > .gpu-assets/hh_harmless_dev_1024.jsonl
du -sh .whl .gpu-assets

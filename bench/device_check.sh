#!/usr/bin/env bash
# The GPU checks of the engine, as one prepared run for a machine with CUDA (the device tool):
# the CUDA tests, then bench/engine.py at a size that takes a few minutes, with the host's time per step.
# The GPU machine lacks polars: run ../shared/tools/device-prep.sh here first, carry .whl, and run this script
# from the repository root.
set -uo pipefail
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/site:$PWD
fi
ln -sfn data moecache_data
nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
python3 -m pytest -q -p no:cacheprovider tests/test_engine_cuda.py tests/test_engine_replay.py tests/test_engine_cli.py 2>&1 | tail -15
python3 bench/engine.py --layers "${LAYERS:-8}" --prompt-tokens 32 --decode-tokens "${TOKENS:-256}" \
  --dir "${BENCH_DIR:-/tmp/bench-engine}" --profile

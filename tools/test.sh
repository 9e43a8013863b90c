#!/usr/bin/env bash
# The whole test suite: set-up (packages, models, build), then every CPU test
# through CTest (the GGUF parser fuzzer runs inside it for a bounded time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"

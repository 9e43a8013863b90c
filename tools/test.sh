#!/usr/bin/env bash
# The whole test suite: set-up (packages, models, build), then every CPU test
# through CTest (the parser fuzzers run inside it for a bounded time), then the
# same gtest suite built with AddressSanitizer + UBSan (tools/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
bash tools/sanitize.sh

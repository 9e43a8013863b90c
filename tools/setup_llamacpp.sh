#!/usr/bin/env bash
# Installs stock llama.cpp through llama-cpp-python 0.3.36 into .cache/venv-llamacpp,
# for the tests that run duet's exported GGUF files in llama.cpp
# (tests/llamacpp_export_test.py). The first run builds llama.cpp from the PyPI
# sdist (CPU only, no llava/tools: a few minutes on 2 cores); pip keeps the built
# wheel in ~/.cache/pip, so later fresh clones on the same machine only install it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.cache/venv-llamacpp
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import llama_cpp, numpy; assert llama_cpp.__version__ == "0.3.36"' 2>/dev/null; then
  exit 0
fi
printf '\n== setup: installing llama-cpp-python 0.3.36 into %s (first build takes minutes)\n' "$VENV"
python3 -m venv "$VENV"
export CMAKE_ARGS="-DGGML_CUDA=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=2
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q llama-cpp-python==0.3.36 numpy

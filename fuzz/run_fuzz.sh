#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/CMakeLists.txt) with clang in build-fuzz/
# and runs each for an equal share of SECONDS (default 210).
#
#   fuzz/run_fuzz.sh [SECONDS] [TARGET...]     e.g. fuzz/run_fuzz.sh 60 hf_config lp_plan
#
# Targets are the fuzz/NAME_fuzz.cpp files (all of them when none is named).
# Each starts from its committed seeds (fuzz/seeds/NAME/) plus, for gguf, files
# fuzz/make_gguf_seed.cpp writes, and the inputs earlier runs found
# (build-fuzz/corpus/NAME/), with the dictionary fuzz/NAME.dict.
# Memory is bounded: an input that makes a parser request more than 512 MB in
# one allocation, or grow the process past 2 GB, counts as a finding, like a
# crash, a sanitizer report, a leak or 10 s spent on one input. Findings are
# written to build-fuzz/findings/NAME-*; the exit status is nonzero if any.
set -euo pipefail

seconds=${1:-210}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DUET_FUZZ_BUILD:-$root/build-fuzz}

targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in "$root"/fuzz/*_fuzz.cpp; do
    name=$(basename "$f" _fuzz.cpp)
    targets+=("$name")
  done
fi

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
mkdir -p "$build"
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" "${launcher[@]}" \
  -DDUET_FUZZ=ON -DDUET_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build/configure.log" \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target gguf_fuzz_seed "${targets[@]/%/_fuzz}"

mkdir -p "$build/seeds/gguf" "$build/findings"
"$build/fuzz/gguf_fuzz_seed" "$build/seeds/gguf"

per_target=$((seconds / ${#targets[@]}))
((per_target >= 1)) || per_target=1
failed=()
for name in "${targets[@]}"; do
  corpus=$build/corpus/$name
  mkdir -p "$corpus"
  seeds=()
  for dir in "$root/fuzz/seeds/$name" "$build/seeds/$name"; do
    [ -d "$dir" ] && seeds+=("$dir")
  done
  log=$build/$name.log
  echo "== fuzzing $name for ${per_target}s"
  # New interesting inputs go to $corpus (kept between runs); seeds are read only.
  if ! "$build/fuzz/${name}_fuzz" "$corpus" "${seeds[@]}" -dict="$root/fuzz/$name.dict" \
      -max_total_time="$per_target" -max_len=8192 -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
      -artifact_prefix="$build/findings/$name-" > "$log" 2>&1; then
    tail -n 60 "$log"
    failed+=("$name")
  else
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" | tr -s ' \n' ' ' && echo
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]} (inputs under $build/findings/)" >&2
  exit 1
fi

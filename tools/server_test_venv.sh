#!/usr/bin/env bash
# The virtual environment of the server's Python tests (tests/server/):
# the openai client and lm-evaluation-harness for `local-completions`.
# lm-eval is installed without its dependencies, which would pull torch,
# transformers and the metric packages; the list below is what its CLI,
# task loading (HF datasets, from local JSONL files only) and API model
# import. Safe to run again, and concurrently (a lock serialises CTest jobs).
# Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/venv-serve
STAMP=$VENV/.duet-installed-v1
mkdir -p .cache
exec 9>.cache/venv-serve.lock
flock 9
if [ ! -f "$STAMP" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps lm-eval==0.4.13 >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check openai==3.63.0 'datasets>=2.16,<6' 'sacrebleu>=2.4,<3' \
    'numpy<3' dill more_itertools sqlitedict tqdm aiohttp tenacity pyyaml pytablewriter jinja2 requests >&2
  touch "$STAMP"
fi
echo "$PWD/$VENV/bin/python"

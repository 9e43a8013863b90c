#!/usr/bin/env bash
# Runs one of the server's Python tests (tests/server/) in its virtual
# environment (made on first use by tools/server_test_venv.sh), with a hard
# time limit. Usage: run_server_test.sh TEST.py [ARGS...]
set -euo pipefail
PY=$(bash "$(dirname "$0")/server_test_venv.sh")
exec timeout --kill-after=10 "${DUET_SERVER_TEST_SECONDS:-540}" "$PY" "$@"

#!/usr/bin/env bash
# Runs every test: starts the test bed (broker + LocalStack), runs `cargo test`, stops the test
# bed again (unless KEEP_TESTBED=1). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

localstack/testbed.sh up
if [[ "${KEEP_TESTBED:-0}" != 1 ]]; then
  trap 'localstack/testbed.sh down' EXIT
fi
set -a
# shellcheck source=/dev/null
. "${TESTBED_DIR:-.testbed}/env"
set +a
cargo test --locked "$@"

#!/usr/bin/env bash
# Runs every test: starts the test bed (broker + LocalStack), runs `cargo test`, stops the test
# bed again (unless KEEP_TESTBED=1). Extra arguments go to `cargo test` (one run, as given).
# Without arguments the fault suite (tests/it/faults/) runs after the rest, one test at a time:
# its faults are timed (a 20 s black hole, a minute of rebalances) and must not share two cores
# with everything else.
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
if (($#)); then
  cargo test --locked "$@"
else
  cargo test --locked -- --skip faults::
  cargo test --locked --test it faults:: -- --test-threads=1
fi

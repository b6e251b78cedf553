#!/usr/bin/env bash
# The soak (not in CI): random fault schedules over every scenario of the fault suite
# (tests/it/faults/), each judged by the oracle, for a given time; prints the table of faults
# injected and of what the oracle found (lost, duplicates by cause, reorders, longest settle,
# stalls, peak RSS) and writes it to .testbed/soak-<UTC time>.md. Exit status 1 on any anomaly.
#
#   scripts/soak.sh [--minutes N]     default 30
#
# Starts the test bed like scripts/test.sh (and stops it again unless KEEP_TESTBED=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=30
while (($#)); do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
  esac
done

localstack/testbed.sh up
if [[ "${KEEP_TESTBED:-0}" != 1 ]]; then
  trap 'localstack/testbed.sh down' EXIT
fi
set -a
# shellcheck source=/dev/null
. "${TESTBED_DIR:-.testbed}/env"
set +a
table="${TESTBED_DIR:-.testbed}/soak-$(date -u +%Y%m%dT%H%M%SZ).md"
SOAK_MINUTES="$minutes" SOAK_TABLE="$(pwd)/$table" \
  cargo test --locked --test it faults::soak::random_fault_schedules -- --nocapture --test-threads=1
echo "soak: table written to $table"

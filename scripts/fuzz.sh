#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (libFuzzer through cargo fuzz) for a given time each; not in CI.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     default: 300 s each, every target
#
# Targets: record_conversion (keys, values, header names and values through every conversion),
# batch_answer (the application's answer to a batch), offset_map (commit metadata). Findings are
# written to fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (both ignored
# by git). Installs cargo-fuzz when it is missing. libFuzzer's instrumentation flags are nightly
# flags: RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain accept them, without a sanitizer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=300
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(record_conversion batch_answer offset_map)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
status=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  printf '\n== %s: %ss\n' "$target" "$seconds"
  if ! cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1; then
    echo "fuzz: $target found a failure: see fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit "$status"

#!/usr/bin/env bash
# Runs every libFuzzer target in <build dir> for <seconds> each; fails on any crash, leak,
# timeout or sanitizer report. Corpora are kept under build dir so reruns start warm.
set -euo pipefail
build=${1:?usage: run.sh <fuzz build dir> [seconds]}
seconds=${2:-60}
status=0
shopt -s nullglob
targets=("$build"/tests/fuzz/*_fuzz)
if ((${#targets[@]} == 0)); then
  echo "fuzz: no targets found in $build/tests/fuzz" >&2
  exit 1
fi
for target in "${targets[@]}"; do
  name=$(basename "$target")
  corpus="$build/corpus/$name"
  mkdir -p "$corpus"
  echo "fuzz: $name for ${seconds}s"
  if ! "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$build/$name-" "$corpus" \
      >"$build/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of $build/$name.log:" >&2
    tail -40 "$build/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units' "$build/$name.log" || true
  fi
done
exit $status

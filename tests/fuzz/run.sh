#!/usr/bin/env bash
# Runs every libFuzzer target in <build dir> for <seconds> each, <jobs> targets at a time; fails
# on any crash, leak, timeout or sanitizer report.
#
#   tests/fuzz/run.sh <fuzz build dir> [seconds (30)] [jobs (2)]
#   FUZZ_UPDATE_SEEDS=1 tests/fuzz/run.sh ...   afterwards, also fold what the runs found into
#                                                the seed corpora kept in the repo
#
# Each target starts from two corpora: tests/fuzz/corpus/<target> (seeds kept in the repo, read
# only: a set-cover merge of hours of earlier runs, so a fresh clone starts with that coverage
# instead of from nothing) and <build dir>/corpus/<target> (where new inputs go, so reruns in the
# same build dir start warm too).
set -euo pipefail
build=${1:?usage: run.sh <fuzz build dir> [seconds] [jobs]}
seconds=${2:-30}
jobs=${3:-2}
seeds="$(cd "$(dirname "$0")" && pwd)/corpus"
shopt -s nullglob
targets=("$build"/tests/fuzz/*_fuzz)
if ((${#targets[@]} == 0)); then
  echo "fuzz: no targets found in $build/tests/fuzz" >&2
  exit 1
fi

run_one() {  # TARGET; output in $build/<name>.log
  local target=$1 name corpus dirs
  name=$(basename "$target")
  corpus="$build/corpus/$name"
  mkdir -p "$corpus"
  dirs=("$corpus")
  [[ -d "$seeds/$name" ]] && dirs+=("$seeds/$name")
  "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$build/$name-" "${dirs[@]}" >"$build/$name.log" 2>&1
}

report() {  # TARGET STATUS
  local name
  name=$(basename "$1")
  if (($2 != 0)); then
    echo "fuzz: $name FAILED; last lines of $build/$name.log:" >&2
    tail -40 "$build/$name.log" >&2
    return 1
  fi
  echo "fuzz: $name: $(grep -E '^stat::number_of_executed_units' "$build/$name.log" |
    tr -d ' ' | cut -d: -f4) runs," "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$build/$name.log" | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)"
}

# Two at a time: on the 2-core CI machine each target still gets a whole core for its time.
status=0
pids=()
names=()
for target in "${targets[@]}"; do
  echo "fuzz: $(basename "$target") for ${seconds}s"
  run_one "$target" &
  pids+=($!)
  names+=("$target")
  if ((${#pids[@]} >= jobs)); then
    rc=0
    wait "${pids[0]}" || rc=$?
    report "${names[0]}" "$rc" || status=1
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  report "${names[$i]}" "$rc" || status=1
done

if ((status == 0)) && [[ "${FUZZ_UPDATE_SEEDS:-}" == 1 ]]; then
  for target in "${targets[@]}"; do
    name=$(basename "$target")
    mkdir -p "$seeds/$name.new"
    "$target" -set_cover_merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      "$seeds/$name.new" "$seeds/$name" "$build/corpus/$name" >"$build/$name.merge.log" 2>&1
    rm -rf "${seeds:?}/$name"
    mv "$seeds/$name.new" "$seeds/$name"
    echo "fuzz: $name: $(find "$seeds/$name" -type f | wc -l) seed inputs"
  done
fi
exit $status

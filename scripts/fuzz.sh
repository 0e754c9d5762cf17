#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, see MYELIN_FUZZ in
# CMakeLists.txt) in a build folder of their own, then runs each target for a fixed time from its
# seed corpus in fuzz/corpus/<target>/. Fails when any target finds a crash, a sanitizer report,
# a leak, a slow input (-timeout) or runs out of memory (-rss_limit_mb).
#
#   FUZZ_SECONDS  seconds per target (default 30)
#   FUZZ_TARGETS  the targets to run, space-separated (default: every fuzz/fuzz_*.cpp)
#   FUZZ_BUILD    build folder (default build-fuzz)
#   JOBS          build parallelism (default: nproc)
#   WERROR        ON/OFF: warnings as errors (default ON)
#
# Inputs found are kept in $FUZZ_BUILD/corpus/<target>/ (the repository's seeds stay as they are)
# and findings in $FUZZ_BUILD/findings/<target>/; reproduce one with
#   $FUZZ_BUILD/fuzz/<target> $FUZZ_BUILD/findings/<target>/crash-...
# and turn it into a regression test next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
build=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-$(nproc)}
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# -O1 -g without NDEBUG: fast enough to fuzz, readable stacks, assertions on.
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DMYELIN_FUZZ=ON -DMYELIN_BUILD_TESTS=OFF \
  -DMYELIN_BUILD_BENCH=OFF "-DMYELIN_WARNINGS_AS_ERRORS=${WERROR:-ON}" >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$work" "$findings"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  echo "== $t: ${seconds}s"
  log="$build/findings/$t.log"
  # New inputs go to the first corpus folder; the seeds folder is only read.
  if "$build/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" "${dict[@]}" \
      "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 60 "$log"
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  summary+=("$t: $status ${done_line:-(no DONE line: see $log)}")
done

echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (see $build/findings/)" >&2
  exit 1
fi

#!/usr/bin/env bash
# Palisade fuzzing helper (see fuzz/README.md). Needs a nightly toolchain and cargo-fuzz; it
# installs both if missing (and falls back to the default toolchain with RUSTC_BOOTSTRAP=1
# where nightly cannot be installed).
#
#   fuzz/fuzz.sh build                 build every target (one cargo invocation) + the seed tool
#   fuzz/fuzz.sh seed                  write the seed corpora into fuzz/corpus/<target>/
#   fuzz/fuzz.sh replay                run every checked-in regression input once
#   fuzz/fuzz.sh run TARGET [SECS] [-- LIBFUZZER_ARGS...]   fuzz one target (default 600 s)
#   fuzz/fuzz.sh smoke [SECS]          build, seed, replay, then fuzz each target SECS (default 30)
#   fuzz/fuzz.sh campaign HOURS        every target for its share of HOURS from the kept corpus
#                                      (one per core), then `cargo fuzz cmin`; results appended to
#                                      fuzz/results.json (executions, coverage, corpus, result)
#   fuzz/fuzz.sh list                  the targets
#
# Every build uses the same flags (release, debug assertions and overflow checks on, ASan), so
# `run` after `build` does not recompile. Exit status is non-zero on any crash, leak, timeout
# or out-of-memory; crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir"
# Instrumented builds use their own flags: keep them in fuzz/target even when the caller
# shares a CARGO_TARGET_DIR between checkouts (sharing would only rebuild both ways).
export CARGO_TARGET_DIR="$fuzz_dir/target"

TOOLCHAIN=${PALISADE_FUZZ_TOOLCHAIN:-nightly}
BUILD_FLAGS=(-O -a)
# Per-input limits: a slow input is a bug (-timeout, seconds), and so is a single huge
# allocation or a growing heap (the targets must stay bounded).
LIBFUZZER_LIMITS=(-timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=512 -dict="$fuzz_dir/palisade.dict")

targets() { for f in "$fuzz_dir"/fuzz_targets/*.rs; do basename "$f" .rs; done; }

ensure_tools() {
  if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: the $TOOLCHAIN toolchain is missing; installing it (rustup toolchain install $TOOLCHAIN --profile minimal)" >&2
    if ! timeout 300 rustup toolchain install "$TOOLCHAIN" --profile minimal; then
      if [ "$TOOLCHAIN" != nightly ]; then
        echo "fuzz.sh: cannot install the $TOOLCHAIN toolchain" >&2
        exit 1
      fi
      # Machines that can only use their one toolchain: cargo-fuzz needs nightly only for -Z
      # flags (sanitizer, coverage passes), which stable accepts under RUSTC_BOOTSTRAP; the
      # ASan runtime ships with stable's rust-std.
      echo "fuzz.sh: nightly is not installable here; using the default toolchain with RUSTC_BOOTSTRAP=1" >&2
      TOOLCHAIN=$(rustup show active-toolchain | cut -d' ' -f1)
      export RUSTC_BOOTSTRAP=1
    fi
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; installing it (cargo install --locked cargo-fuzz)" >&2
    cargo install --locked cargo-fuzz
  fi
}

bin_dir() {
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  echo "$fuzz_dir/target/$host/release"
}

build() {
  ensure_tools
  # One cargo invocation builds every [[bin]] (targets and the seed tool), so the
  # instrumented dependency graph is compiled once.
  cargo "+$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}"
}

seed() {
  local tool
  tool="$(bin_dir)/seed_corpora"
  [ -x "$tool" ] || build
  "$tool" "$fuzz_dir/corpus"
}

replay() {
  local dir t files status=0
  for t in $(targets); do
    dir="$fuzz_dir/regressions/$t"
    mapfile -t files < <(find "$dir" -type f ! -name '.*' 2>/dev/null | sort)
    if [ "${#files[@]}" -eq 0 ]; then
      echo "replay $t: no regression inputs"
      continue
    fi
    echo "replay $t: ${#files[@]} inputs"
    if ! "$(bin_dir)/$t" "${LIBFUZZER_LIMITS[@]}" "${files[@]}" >"$fuzz_dir/target/replay-$t.log" 2>&1; then
      cat "$fuzz_dir/target/replay-$t.log" >&2
      echo "replay $t: a regression input fails again (see above)" >&2
      status=1
    fi
  done
  return $status
}

run_target() {
  local t=$1 secs=${2:-600}
  shift 2 || shift $#
  [ "${1:-}" = "--" ] && shift
  local all
  all=" $(targets | tr '\n' ' ')"
  if [[ "$all " != *" $t "* ]]; then
    echo "fuzz.sh: unknown target '$t'; targets:$all" >&2
    exit 64
  fi
  ensure_tools
  mkdir -p "$fuzz_dir/corpus/$t"
  # Corpus first (new inputs are written there), regression inputs as extra seeds.
  local dirs=("$fuzz_dir/corpus/$t")
  [ -d "$fuzz_dir/regressions/$t" ] && dirs+=("$fuzz_dir/regressions/$t")
  cargo "+$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -print_final_stats=1 "${LIBFUZZER_LIMITS[@]}" "$@"
}

smoke() {
  local secs=${1:-30} t failed=() jobs pids=() names=() i
  # Targets run side by side, one per core (PALISADE_FUZZ_JOBS overrides), each single-threaded.
  jobs=${PALISADE_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
  build
  seed
  replay
  for t in $(targets); do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "==> fuzz $t for ${secs}s"
    run_target "$t" "$secs" >"$fuzz_dir/target/smoke-$t.log" 2>&1 &
    pids+=($!)
    names+=("$t")
  done
  for i in "${!pids[@]}"; do
    t=${names[$i]}
    if wait "${pids[$i]}"; then
      echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$fuzz_dir/target/smoke-$t.log" | tail -n 1)"
    else
      tail -n 60 "$fuzz_dir/target/smoke-$t.log" >&2
      failed+=("$t")
    fi
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crash in: ${failed[*]}. The input is in fuzz/artifacts/<target>/; reproduce with" >&2
    echo "  cd fuzz && cargo +$TOOLCHAIN fuzz run ${BUILD_FLAGS[*]} <target> artifacts/<target>/<file>" >&2
    echo "then fix the bug and add the input to fuzz/regressions/<target>/ (see fuzz/README.md)." >&2
    return 1
  fi
}

# `campaign HOURS`: HOURS of fuzzing in all, shared equally among the targets, jobs side by
# side (one per core, PALISADE_FUZZ_JOBS overrides), each from its kept corpus; then every
# corpus is minimised (`cargo fuzz cmin`) and one JSON object per target is added to
# fuzz/results.json: target, date, commit, seconds, executions, coverage edges and features
# (libFuzzer's final stats), corpus size before/after cmin, and "ok" or "crash".
campaign() {
  local hours=${1:?usage: fuzz.sh campaign HOURS}
  local t n secs jobs pids=() names=() i log status=0 commit
  n=$(targets | wc -l)
  jobs=${PALISADE_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
  # Each target gets HOURS / targets of wall time times the parallel jobs.
  secs=$(python3 -c "print(max(30, int(float('$hours') * 3600 * $jobs / $n)))")
  commit=$(git -C "$fuzz_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
  build
  seed
  replay
  echo "campaign: $n targets, ${secs}s each, $jobs at a time"
  for t in $(targets); do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_target "$t" "$secs" >"$fuzz_dir/target/campaign-$t.log" 2>&1 &
    pids+=($!)
    names+=("$t")
  done
  for i in "${!pids[@]}"; do
    t=${names[$i]}
    log="$fuzz_dir/target/campaign-$t.log"
    local result=ok before after
    wait "${pids[$i]}" || { result=crash; status=1; tail -n 40 "$log" >&2; }
    before=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
    if [ "$result" = ok ]; then
      cargo "+$TOOLCHAIN" fuzz cmin "${BUILD_FLAGS[@]}" "$t" "$fuzz_dir/corpus/$t" -- "${LIBFUZZER_LIMITS[@]}" \
        >"$fuzz_dir/target/cmin-$t.log" 2>&1 || echo "campaign: cmin of $t failed (corpus kept)" >&2
    fi
    after=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
    python3 - "$log" "$t" "$secs" "$result" "$before" "$after" "$commit" "$fuzz_dir/results.json" <<'PY'
import json, re, sys, time
log, target, secs, result, before, after, commit, out = sys.argv[1:]
text = open(log, encoding="utf-8", errors="replace").read()
done = re.findall(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", text, re.M)
execs, cov, ft = (int(x) for x in done[-1]) if done else (None, None, None)
try:
    results = json.load(open(out, encoding="utf-8"))
except (OSError, ValueError):
    results = []
results.append({"target": target, "date": time.strftime("%Y-%m-%d"), "commit": commit,
                "seconds": int(secs), "executions": execs, "coverage_edges": cov, "features": ft,
                "corpus_before_cmin": int(before), "corpus_after_cmin": int(after), "result": result})
with open(out, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
    f.write("\n")
print(f"{target}: {result}, {execs} executions, cov {cov}, corpus {before} -> {after}")
PY
  done
  return $status
}

cmd=${1:-}
shift || true
case "$cmd" in
  build) build ;;
  seed) seed ;;
  replay) build; replay ;;
  run) [ $# -ge 1 ] || { echo "usage: fuzz.sh run TARGET [SECS] [-- ARGS]" >&2; exit 64; }; run_target "$@" ;;
  smoke) smoke "$@" ;;
  campaign) campaign "$@" ;;
  list) targets ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 64 ;;
esac

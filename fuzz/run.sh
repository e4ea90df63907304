#!/usr/bin/env bash
# Fuzzing with AFL++ through cargo-afl, on the stable toolchain (see README.md beside this file).
#
#   fuzz/run.sh TARGET SECONDS   a campaign of one target (load, policy, registries, data_url,
#                                plan); findings and the grown queue under fuzz/out/TARGET, and
#                                a re-run resumes there
#   fuzz/run.sh --smoke [SECONDS] what tests/run calls: every seed of every target replayed once,
#                                then each target fuzzed SECONDS (default 5)
#
# Installs what it needs (cargo-afl, and its build of AFL++). Exits non-zero when a target
# crashes (a panic, an abort, memory past the limit), naming the inputs that did it.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(load policy registries data_url plan)
# A target may use this much memory (MiB) before AFL++ counts the input as a crash.
MEM_LIMIT_MB=${MEM_LIMIT_MB:-1024}

setup() {
    command -v make >/dev/null && command -v cc >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
    }
    command -v cargo-afl >/dev/null || cargo install cargo-afl --locked
    # cargo-afl builds AFL++ (afl-fuzz and the runtime linked into the targets) once per rustc;
    # once built, this refuses ("already built"), and a real failure shows when afl-fuzz runs.
    cargo afl config --build >/dev/null 2>&1 || true
    cargo afl build --release --locked --quiet
}

# Every seed through the target once, outside AFL++ (the binary then runs one input from stdin).
replay() {
    local t=$1 f failed=0
    for f in corpus/"$t"/*; do
        if ! ./target/release/"$t" <"$f" >/dev/null 2>"target/replay-$t.err"; then
            echo "FAIL $t: seed $f" >&2
            cat "target/replay-$t.err" >&2
            failed=1
        fi
    done
    return $failed
}

# campaign TARGET SECONDS OUT: fuzz TARGET from its seeds (or resume OUT's queue).
campaign() {
    local t=$1 secs=$2 out=$3
    mkdir -p "$(dirname "$out")"
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_AUTORESUME=1 \
        AFL_QUIET=1 cargo afl fuzz -V "$secs" -m "$MEM_LIMIT_MB" -i corpus/"$t" -o "$out" \
        ./target/release/"$t" >"target/afl-$t.log" 2>&1 || {
        echo "FAIL $t: afl-fuzz did not run (target/afl-$t.log):" >&2
        tail -20 "target/afl-$t.log" >&2
        return 1
    }
    local stats=$out/default/fuzzer_stats
    local execs crashes hangs corpus
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    crashes=$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")
    hangs=$(awk -F' *: *' '$1=="saved_hangs"{print $2}' "$stats")
    corpus=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats")
    echo "$t: ${secs}s, $execs executions, $corpus inputs in the queue, $crashes crashes, $hangs hangs"
    if [ "${crashes:-0}" != 0 ]; then
        echo "FAIL $t: crashing inputs:" >&2
        ls "$out"/default/crashes/id:* >&2
        return 1
    fi
}

case "${1:-}" in
    --smoke)
        secs=${2:-5}
        setup
        status=0
        for t in "${TARGETS[@]}"; do replay "$t" || status=1; done
        for t in "${TARGETS[@]}"; do
            # A smoke run starts afresh: it checks this tree, not an older campaign's queue.
            rm -rf "out/smoke/$t"
            campaign "$t" "$secs" "out/smoke/$t" || status=1
        done
        exit $status
        ;;
    load | policy | registries | data_url | plan)
        [ $# -eq 2 ] || { echo "usage: $0 TARGET SECONDS | --smoke [SECONDS]" >&2; exit 2; }
        setup
        replay "$1"
        campaign "$1" "$2" "out/$1"
        ;;
    *)
        echo "usage: $0 TARGET SECONDS | --smoke [SECONDS]" >&2
        echo "targets: ${TARGETS[*]}" >&2
        exit 2
        ;;
esac

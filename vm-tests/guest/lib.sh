# Helpers for scenario scripts (sourced at their top; runs inside the guest).
# Environment: MCD_BOOT (1 on the first boot), MCD_BIN (the freshly built binaries),
# MCD_RESULTS (shared with the host), MCD_SYSTEMD_TESTS=1.
set -euo pipefail

# Lines a scenario wants shown under its result line on the host.
report() { echo "$*" | tee -a "$MCD_RESULTS/report"; }

fail() { echo "FAILED: $*" >&2; echo "$*" >> "$MCD_RESULTS/reason"; exit 1; }

# assert_eq WANT GOT WHAT
assert_eq() { [ "$1" = "$2" ] || fail "$3: want '$1', got '$2'"; }

# Runs one test of tests/systemd_dbus.rs (the systemd client against this guest's PID 1) and
# requires that exactly that one test ran and passed; its printed lines (not libtest's) go to the
# report.
client_test() {
    local out
    out=$("$MCD_BIN/systemd_dbus" --ignored --exact "$1" --nocapture --test-threads=1 2>&1) || {
        echo "$out"
        fail "client test $1: $(echo "$out" | grep -m1 -A3 'panicked at' | tail -n +2 | tr '\n' ' ')"
    }
    echo "$out"
    # libtest exits 0 when the name matches nothing (after a rename, say): exactly one test must
    # have run, and passed.
    echo "$out" | grep -qx 'running 1 test' \
        || fail "client test $1: not exactly one test ran ($(echo "$out" | grep -m1 '^running' || echo 'no "running" line'))"
    echo "$out" | grep -qE '^test result: ok\. 1 passed; 0 failed;' \
        || fail "client test $1: no 'test result: ok. 1 passed' line"
    echo "$out" | sed -E 's/^test [^ ]+ \.\.\. //' \
        | grep -vE '^(running [0-9]+ tests?|test result:.*|ok|)$' >> "$MCD_RESULTS/report" || true
}

# Asks for a reboot and ends this boot's part of the scenario (the runner sees exit 100).
rebooting() { exit 100; }

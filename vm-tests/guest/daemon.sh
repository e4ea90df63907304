# Helpers for the daemon's scenarios (sourced after lib.sh; runs inside the guest).
#
# The daemon runs as machine-config-daemon.service (the repository's systemd/ unit, installed by
# run.sh) in standalone mode: desired configs go into /etc/machine-config-daemon/desired.d/, the
# node disruption policy into /etc/machine-config-daemon/policy.yaml, and the outcome is read
# from the status file the daemon writes (/run/machine-config-daemon/status.json).
#
# Building a MachineConfig:
#   mc_reset
#   mc_file /etc/x "contents"$'\n' [MODE]      # MODE decimal, default 420 (0644)
#   mc_unit name.service true|false|'' "unit file"  # enabled true/false/unset
#   mc_masked name.service
#   mc_kargs ARG...                          # kernelArguments
#   mc_desire NAME      # writes it (atomically) to desired.d; sets MC_RENDERED to the name the
#                       # daemon will report (rendered-worker-…)

MCD_STATE_DIR=/etc/machine-config-daemon
MCD_DESIRED=$MCD_STATE_DIR/desired.d
MCD_POLICY=$MCD_STATE_DIR/policy.yaml
MCD_STATUS=/run/machine-config-daemon/status.json
MCD_UNIT=machine-config-daemon.service
MCD=/usr/bin/machine-config-daemon
# Scenario state that must survive a reboot.
MCD_KEEP=/var/lib/mcd-scenario
mkdir -p "$MCD_KEEP"

MC_FILES='[]' MC_UNITS='[]' MC_KARGS='[]' MC_RENDERED=

mc_reset() { MC_FILES='[]' MC_UNITS='[]' MC_KARGS='[]'; }

# mc_kargs ARG...: the config's kernelArguments.
mc_kargs() { MC_KARGS=$(printf '%s\n' "$@" | jq -R . | jq -cs .); }

# data URL (base64) of stdin.
data_url() { printf 'data:;base64,%s' "$(base64 -w0)"; }

mc_file() {
    local src
    src=$(printf '%s' "$2" | data_url)
    MC_FILES=$(jq -c --arg p "$1" --arg s "$src" --argjson m "${3:-420}" \
        '. + [{path: $p, mode: $m, overwrite: true, contents: {source: $s}}]' <<< "$MC_FILES")
}

mc_unit() {
    MC_UNITS=$(jq -c --arg n "$1" --arg e "$2" --arg c "$3" \
        '. + [{name: $n, contents: $c} + (if $e == "" then {} else {enabled: ($e == "true")} end)]' \
        <<< "$MC_UNITS")
}

mc_masked() {
    MC_UNITS=$(jq -c --arg n "$1" '. + [{name: $n, mask: true}]' <<< "$MC_UNITS")
}

# Writes the MachineConfig built so far as desired.d/50-scenario.json (temp file + rename, as
# tools do; the daemon reads only *.json|*.yaml|*.yml there).
mc_desire() {
    mkdir -p "$MCD_DESIRED"
    jq -n --arg name "$1" --argjson files "$MC_FILES" --argjson units "$MC_UNITS" \
        --argjson kargs "$MC_KARGS" '{
        apiVersion: "machineconfiguration.openshift.io/v1", kind: "MachineConfig",
        metadata: {name: $name, labels: {"machineconfiguration.openshift.io/role": "worker"}},
        spec: {config: {ignition: {version: "3.4.0"},
                        storage: {files: $files}, systemd: {units: $units}},
               kernelArguments: $kargs}}' \
        > "$MCD_DESIRED/.50-scenario.json.tmp"
    mv "$MCD_DESIRED/.50-scenario.json.tmp" "$MCD_DESIRED/50-scenario.json"
    MC_RENDERED=$("$MCD" render --pool worker "$MCD_DESIRED" | jq -r .metadata.name)
    echo "desired: $1 -> $MC_RENDERED"
}

# policy_set <<'EOF' … EOF: the node disruption policy (spec.nodeDisruptionPolicy's body, YAML,
# indented by 4 spaces), written atomically.
policy_set() {
    mkdir -p "$MCD_STATE_DIR"
    {
        echo "apiVersion: operator.openshift.io/v1"
        echo "kind: MachineConfiguration"
        echo "metadata:"
        echo "  name: cluster"
        echo "spec:"
        echo "  nodeDisruptionPolicy:"
        cat
    } > "$MCD_POLICY.tmp"
    mv "$MCD_POLICY.tmp" "$MCD_POLICY"
}

# Starts the daemon as its packaged unit, enabled so that it comes back after a reboot.
# Type=notify: this returns once the daemon has done its first sync (READY=1).
mcd_start() {
    systemctl enable --now "$MCD_UNIT" 2>&1 || {
        journalctl -u "$MCD_UNIT" --no-pager | tail -30
        fail "systemctl enable --now $MCD_UNIT failed"
    }
}

# For the scenarios that check the daemon's view of a reboot, container tier only: nspawn gives
# each boot of the guest its own boot id by mounting a file over /proc/sys/kernel/random/boot_id,
# and the unit's ProtectKernelTunables= and ProtectControlGroups= mount /proc/sys and /sys anew
# inside the service, without that file: there the daemon reads the host
# kernel's id, the same at every boot of the guest, and takes its reboot for none. On a machine
# (and in the VM tier) that file is the kernel's own, so both stay on there; here a drop-in turns
# them off. 33-daemon-sandbox checks the packaged sandbox with both on.
mcd_container_boot_id() {
    systemd-detect-virt -q --container || return 0
    mkdir -p "/etc/systemd/system/$MCD_UNIT.d"
    printf '[Service]\nProtectKernelTunables=no\nProtectControlGroups=no\n' \
        > "/etc/systemd/system/$MCD_UNIT.d/90-container-boot-id.conf"
    systemctl daemon-reload
}

# mcd_reboot_mode MODE: the daemon's --reboot-mode (full, soft, auto), through MCD_REBOOT_MODE in
# a drop-in of its unit; restarts the daemon when it runs.
mcd_reboot_mode() {
    mkdir -p "/etc/systemd/system/$MCD_UNIT.d"
    printf '[Service]\nEnvironment=MCD_REBOOT_MODE=%s\n' "$1" \
        > "/etc/systemd/system/$MCD_UNIT.d/60-reboot-mode.conf"
    systemctl daemon-reload
    systemctl try-restart "$MCD_UNIT"
}

# running_pids: "unit main-pid" for every running service, one a line.
running_pids() {
    systemctl list-units --type=service --state=running --no-legend --plain \
        | awk '{print $1}' | while read -r u; do echo "$u $(main_pid "$u")"; done
}

# mcd_metric NAME: a metric's value from the daemon's endpoint (127.0.0.1:8797; the image has no
# curl: bash's /dev/tcp).
mcd_metric() {
    local body
    body=$(exec 5<> /dev/tcp/127.0.0.1/8797 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&5 && cat <&5) \
        || fail "cannot read the daemon's metrics"
    awk -v n="$1" '$1 == n {print $2}' <<< "$body"
}

# userspace_started: when this userspace started (µs, monotonic; basic.target's activation, as
# the daemon reads it): a soft reboot changes it, the boot id stays.
userspace_started() { systemctl show -p ActiveEnterTimestampMonotonic --value basic.target; }

# st JQ: a field of the status file.
st() { jq -r "$1" "$MCD_STATUS"; }
# cond TYPE: a condition's status (True/False/Unknown; empty when absent).
cond() { jq -r --arg t "$1" '.conditions[] | select(.type == $t) | .status' "$MCD_STATUS"; }

# wait_status JQ-CONDITION [SECONDS] [WHAT]: polls the status file (every 20 ms) until the
# condition holds; fails with the current status otherwise. Sets WAITED (seconds).
wait_status() {
    local expr=$1 limit=${2:-30} what=${3:-$1} start now
    start=$(date +%s.%N)
    while :; do
        if [ -f "$MCD_STATUS" ] && jq -e "$expr" "$MCD_STATUS" > /dev/null 2>&1; then
            now=$(date +%s.%N)
            WAITED=$(awk -v a="$start" -v b="$now" 'BEGIN{printf "%.3f", b-a}')
            return 0
        fi
        now=$(date +%s.%N)
        if awk -v a="$start" -v b="$now" -v l="$limit" 'BEGIN{exit !(b-a > l)}'; then
            echo "--- status:"; cat "$MCD_STATUS" 2>/dev/null || echo "(no status file)"
            echo "--- journal:"; journalctl -u "$MCD_UNIT" --no-pager | tail -40
            fail "waited ${limit}s for $what; state $(st .state 2>/dev/null) config $(st .currentConfig 2>/dev/null) reason: $(st .reason 2>/dev/null)"
        fi
        sleep 0.02
    done
}

# wait_done CONFIG [SECONDS]: state Done on CONFIG.
wait_done() {
    wait_status "(.state == \"Done\") and (.currentConfig == \"$1\")" "${2:-30}" "Done on $1"
}

# The main PID of a unit.
main_pid() { systemctl show -p MainPID --value "$1"; }

# Boot id, to tell a reboot from none.
boot_id() { cat /proc/sys/kernel/random/boot_id; }

# The post actions of the last plan, as one line (e.g. "Reload(mcd-test.service)").
plan_actions() {
    st '[.lastPlan.actions[]? | ((.reload // .restart // {}).serviceName) as $s
        | if $s then "\(.type)(\($s))" else .type end] | join(",")'
}

# The daemon's own main PID.
mcd_pid() { main_pid "$MCD_UNIT"; }

# No reboot pending or recorded.
assert_no_reboot() {
    [ ! -e "$MCD_STATE_DIR/reboot-pending" ] || fail "a reboot was recorded: $(cat "$MCD_STATE_DIR/reboot-pending")"
    assert_eq "$1" "$(boot_id)" "boot id (no reboot)"
    assert_eq "" "$(st '.postConfigAction // ""')" "postConfigAction"
}

# The test service of the daemon's scenarios: it records the config file it saw when it started
# (/run/mcd-test-started) and when it was reloaded (/run/mcd-test-reloaded). $1: a version for
# its Description; $2: extra [Service] lines.
test_unit() {
    cat <<UNIT
[Unit]
Description=mcd vm-test service v${1:-1}

[Service]
ExecStart=/bin/sh -c 'cat /etc/mcd-test/app.conf > /run/mcd-test-started; exec sleep infinity'
ExecReload=/bin/sh -c 'cat /etc/mcd-test/app.conf > /run/mcd-test-reloaded'
${2:-}

[Install]
WantedBy=multi-user.target
UNIT
}

# Holding the daemon at a fail point (the binary is built with `--features failpoints`):
# `mcd_hold_point NAME` sets MCD_FAILPOINT_HOLD=NAME=$MCD_HOLD for the daemon's unit and restarts
# it; from then on, each time the daemon reaches NAME while the named pipe $MCD_HOLD exists, it
# opens the pipe for reading and waits for the end of what is written to it. `mkfifo "$MCD_HOLD"`
# arms the hold, `hold_wait` returns once the daemon is held there (its open of the pipe is what
# lets ours for writing return: an event, not a delay), `hold_release` lets it go on; removing
# the pipe while it is held lets every later pass through NAME go by.
MCD_HOLD=/run/mcd-scenario-hold

mcd_hold_point() {
    mkdir -p "/etc/systemd/system/$MCD_UNIT.d"
    printf '[Service]\nEnvironment=MCD_FAILPOINT_HOLD=%s=%s\n' "$1" "$MCD_HOLD" \
        > "/etc/systemd/system/$MCD_UNIT.d/50-failpoint.conf"
    systemctl daemon-reload
    systemctl restart "$MCD_UNIT"
}

# hold_wait [SECONDS]: opens fd 3 on $MCD_HOLD for writing, which returns once the daemon holds
# at the fail point; fails after SECONDS (default 30) if it never gets there (a watchdog then
# opens the pipe itself to end the wait).
hold_wait() {
    local watchdog
    rm -f "$MCD_HOLD.timeout"
    ( sleep "${1:-30}"; touch "$MCD_HOLD.timeout"; exec 4< "$MCD_HOLD" ) &
    watchdog=$!
    exec 3> "$MCD_HOLD"
    kill "$watchdog" 2> /dev/null || true
    wait "$watchdog" 2> /dev/null || true
    [ ! -e "$MCD_HOLD.timeout" ] || fail "the daemon never reached its held fail point in ${1:-30}s"
}

# hold_release: the held daemon goes on (it reads the end of the pipe).
hold_release() { exec 3>&-; }

# wait_journal PATTERN [SECONDS]: waits until the daemon's journal has a line matching PATTERN.
wait_journal() {
    local start now
    start=$(date +%s)
    until journalctl -u "$MCD_UNIT" --no-pager -o cat | grep -q -- "$1"; do
        now=$(date +%s)
        [ $((now - start)) -le "${2:-30}" ] || fail "no journal line '$1' in ${2:-30}s"
        sleep 0.05
    done
}

#!/bin/bash
# vm-tests: each scenario boots a Debian guest with systemd as PID 1 (container tier:
# systemd-nspawn --boot on a fresh overlay of a cached root filesystem; VM tier: QEMU), with this crate's
# freshly built binaries bind-mounted at /mcd-bin, runs one scenario script inside it and reads
# the result. See vm-tests/README.md.
#
# Usage: vm-tests/run.sh [--vm | --vm-ci] [--keep] [--no-build] [--shell] [SCENARIO...]
#   SCENARIO  a script under vm-tests/ without .sh (scenarios/10-systemd-reload, bench/reload);
#             a bare name means scenarios/NAME. Default: every scenarios/*.sh (and with --vm,
#             every vm-scenarios/*.sh: those need a kernel of their own).
#   --keep    keep each scenario's overlay, console log and journal under the run directory
#   --no-build  use the binaries of the last build
#   --vm      the VM tier: each scenario in a QEMU guest (own kernel) instead of systemd-nspawn
#   --vm-ci   the VM tier with CI's scenarios (reboot, force file, kill -9, kernel arguments)
#   --shell   boot a guest on a fresh overlay with an interactive console (login: root, no
#             password); `poweroff` (or Ctrl-] three times) leaves
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
. "$HERE/lib/common.sh"
. "$HERE/lib/rootfs.sh"
. "$HERE/lib/vmimage.sh"
. "$HERE/lib/qemu.sh"

KEEP=0 BUILD=1 SHELL_MODE=0 VM=0 SCENARIOS=()
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --shell) SHELL_MODE=1 ;;
    --vm) VM=1 ;;
    --vm-ci) VM=1 SCENARIOS+=(scenarios/24-daemon-reboot scenarios/26-daemon-force scenarios/29-daemon-kill9
        vm-scenarios/40-daemon-kargs vm-scenarios/41-daemon-kargs-drift) ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    */*) SCENARIOS+=("${arg%.sh}") ;;
    *) SCENARIOS+=("scenarios/${arg%.sh}") ;;
    esac
done
if [ ${#SCENARIOS[@]} -eq 0 ] && [ $SHELL_MODE = 0 ]; then
    # vm-scenarios/ need a kernel of their own (kernel arguments): the VM tier only.
    dirs=("$HERE"/scenarios)
    [ $VM = 1 ] && dirs+=("$HERE"/vm-scenarios)
    for d in "${dirs[@]}"; do
        for f in "$d"/*.sh; do
            n=${f#"$HERE"/}
            SCENARIOS+=("${n%.sh}")
        done
    done
fi
for s in "${SCENARIOS[@]}"; do
    [ -f "$HERE/$s.sh" ] || die "no scenario $HERE/$s.sh"
done

[ "$(id -u)" = 0 ] || die "run as root (systemd-nspawn and overlay mounts need it)"
ensure_cmd systemd-nspawn systemd-container mmdebstrap mmdebstrap
[ $VM = 1 ] && ensure_qemu
[ $VM = 1 ] && [ $SHELL_MODE = 1 ] && die "--shell is for the container tier"

SCENARIO_TIMEOUT=${MCD_VM_SCENARIO_TIMEOUT:-180}
# vm-scenarios/ install kernels (kernel-install, depmod), which take minutes under TCG.
KERNEL_SCENARIO_TIMEOUT=${MCD_VM_SCENARIO_TIMEOUT:-480}
MAX_BOOTS=${MCD_VM_MAX_BOOTS:-4}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RUN_DIR=${MCD_VM_RUN_DIR:-$TARGET/vm-tests/run}
BIN="$TARGET/vm-tests/bin"

# The daemon and the client's test binary, as the guest sees them in /mcd-bin.
build() {
    local start json
    start=$(date +%s.%N)
    log "building (cargo, ${MCD_VM_PROFILE:-debug})"
    local prof=()
    [ "${MCD_VM_PROFILE:-debug}" = release ] && prof=(--release)
    mkdir -p "$TARGET/vm-tests"
    local clog="$TARGET/vm-tests/cargo.log"
    # Fail points ($FAILPOINTS) are compiled in: the kill -9 scenario widens an update's window
    # with one. Both commands use the same features so the library is built once.
    (cd "$REPO" && cargo build --quiet "${prof[@]}" --features failpoints --bin machine-config-daemon) 2> "$clog" \
        || { cat "$clog" >&2; die "cargo build failed"; }
    json=$(cd "$REPO" && cargo test --quiet "${prof[@]}" --features failpoints --no-run --test systemd_dbus --message-format=json 2>> "$clog") \
        || { cat "$clog" >&2; die "cargo test --no-run failed"; }
    mkdir -p "$BIN"
    local exe
    exe=$(echo "$json" | grep '"executable":"[^"]*systemd_dbus-' | tail -1 | sed 's/.*"executable":"\([^"]*\)".*/\1/')
    [ -x "$exe" ] || die "test binary systemd_dbus not found"
    install -m 0755 "$exe" "$BIN/systemd_dbus"
    install -m 0755 "$TARGET/${MCD_VM_PROFILE:-debug}/machine-config-daemon" "$BIN/machine-config-daemon"
    log "built in $(elapsed "$start") s"
}

# Prepares a fresh overlay of the root filesystem in $1 (merged at $1/root), replacing what a
# previous (possibly interrupted) run left there.
overlay_up() {
    local w=$1 lower=${2:-$ROOTFS}
    if mountpoint -q "$w/root" 2>/dev/null; then umount "$w/root" || umount -l "$w/root"; fi
    rm -rf "$w"
    mkdir -p "$w/upper" "$w/work" "$w/root" "$w/results"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$w/upper,workdir=$w/work" "$w/root" \
        || die "overlay mount failed on $w"
}

# Unmounts the overlay of $1; deletes its files unless $2 is 1.
overlay_down() {
    umount "$1/root" 2>/dev/null || umount -l "$1/root" 2>/dev/null || true
    [ "$2" = 1 ] || rm -rf "$1"
}

# systemd-nspawn with the guest's binds, as an argument list ($1: overlay directory).
nspawn_cmd() {
    local w=$1
    shift
    NSPAWN=(systemd-nspawn --quiet --register=no --keep-unit --private-network \
        -D "$w/root" --machine="mcd-vmtest-$$" \
        --bind-ro="$BIN:/mcd-bin" --bind-ro="$HERE:/mcd-vmtest" --bind="$w/results:/mcd-results" \
        "$@")
}

# What every guest gets on top of the image: the daemon on its packaged path and, once the
# repository has it, its systemd unit (installed, not enabled: scenarios start it).
guest_setup() {
    local root=$1/root
    ln -sf /mcd-bin/machine-config-daemon "$root/usr/bin/machine-config-daemon"
    if [ -f "$REPO/systemd/machine-config-daemon.service" ]; then
        install -m 0644 "$REPO/systemd/machine-config-daemon.service" "$root/etc/systemd/system/"
    fi
    # Images whose systemd can soft-reboot: the shares must outlive a soft reboot, which stops
    # every mount unit that conflicts with umount.target (the default); nspawn made them, and
    # only the container's end should take them away.
    if [ "${2:-stock}" != stock ]; then
        local m
        for m in 'mcd\x2dbin' 'mcd\x2dvmtest' 'mcd\x2dresults'; do
            mkdir -p "$root/etc/systemd/system/$m.mount.d"
            printf '[Unit]\nDefaultDependencies=no\n' > "$root/etc/systemd/system/$m.mount.d/50-keep.conf"
        done
        # The runner's RequiresMountsFor= makes its two mount units ignore those drop-ins (they
        # are loaded before); with the mounts kept, it is not needed.
        sed -i '/^RequiresMountsFor=/d' "$root/etc/systemd/system/mcd-vmtest.service"
    fi
}

# The VM tier: one boot of the QEMU guest on the scenario's qcow2 overlay ($1: its directory).
# -no-reboot: a reboot in the guest ends QEMU like a power-off; the caller tells them apart by
# the result file (written only when the scenario is over).
qemu_boot() {
    local w=$1
    # The boot loader stand-in: the guest's /etc/kernel/cmdline as it was at its last shutdown
    # (copied to the results share by the runner unit), else the default command line.
    local cmdline=$QEMU_CMDLINE
    if [ -s "$w/results/kernel-cmdline" ]; then
        cmdline=$(tr '\n' ' ' < "$w/results/kernel-cmdline")
    fi
    echo "=== kernel command line: $cmdline" >> "$w/console.log"
    local tmo=$SCENARIO_TIMEOUT
    case "$(cat "$w/results/scenario")" in vm-scenarios/*) tmo=$KERNEL_SCENARIO_TIMEOUT ;; esac
    qemu_args "$w" "$cmdline"
    timeout -k 10 "$tmo" qemu-system-x86_64 "${QEMU_ARGS[@]}" >> "$w/console.log" 2>&1
}

# Runs one scenario; prints its line; returns 0 when it passed, 3 for a known failure (XFAIL).
run_scenario() {
    local name=$1 w start boot rc result
    w="$RUN_DIR/${name//\//_}"
    # A scenario's `# ROOTFS: <variant>` line picks its image (lib/rootfs.sh, lib/vmimage.sh;
    # built on first use, cached like the stock one).
    local variant
    variant=$(sed -n 's/^# ROOTFS: *//p' "$HERE/$name.sh" | head -1)
    if [ $VM = 1 ]; then
        # qemu_boot reads VMIMAGE: this scenario's image.
        local VMIMAGE
        VMIMAGE=$(vmimage_path "${variant:-stock}") || die "no ${variant:-stock} VM image"
        w="$w.vm"
        rm -rf "$w"
        mkdir -p "$w/results"
        qemu-img create -q -f qcow2 -b "$VMIMAGE/disk.qcow2" -F qcow2 "$w/disk.qcow2" || die "qemu-img create failed"
    else
        local lower
        lower=$(rootfs_path "${variant:-stock}") || die "no ${variant:-stock} root filesystem"
        overlay_up "$w" "$lower"
        install -m 0644 "$HERE/guest/mcd-vmtest.service" "$w/root/etc/systemd/system/mcd-vmtest.service"
        mkdir -p "$w/root/etc/systemd/system/multi-user.target.wants"
        ln -sf ../mcd-vmtest.service "$w/root/etc/systemd/system/multi-user.target.wants/mcd-vmtest.service"
        guest_setup "$w" "${variant:-stock}"
    fi
    echo "$name" > "$w/results/scenario"
    start=$(date +%s.%N)
    boot=0 exits=""
    while :; do
        boot=$((boot + 1))
        if [ $VM = 1 ]; then
            qemu_boot "$w"
            rc=$?
            exits="$exits${exits:+,}$rc"
            # QEMU ends on a reboot too: no result yet means the scenario goes on.
            [ $rc = 0 ] && [ ! -f "$w/results/result" ] && [ $boot -lt "$MAX_BOOTS" ] && continue
            break
        fi
        nspawn_cmd "$w" --boot --console=read-only
        timeout -k 10 "$SCENARIO_TIMEOUT" "${NSPAWN[@]}" >> "$w/console.log" 2>&1
        rc=$?
        exits="$exits${exits:+,}$rc"
        # 133: the guest rebooted; follow it on the same overlay.
        [ $rc = 133 ] && [ $boot -lt "$MAX_BOOTS" ] && continue
        break
    done
    local secs
    secs=$(elapsed "$start")
    if [ -f "$w/results/result" ]; then
        result=$(cat "$w/results/result")
    elif [ $rc = 124 ]; then
        result="fail: timed out after ${SCENARIO_TIMEOUT}s"
    else
        result="fail: no result (nspawn exit status $rc after $boot boot(s))"
    fi
    [ -f "$w/results/reason" ] && result="$result: $(head -c 600 "$w/results/reason")"
    # A known daemon bug: the scenario's `# XFAIL: <why>` line. Its failure is counted apart
    # (XFAIL); its passing is a failure to notice (XPASS: remove the line).
    local xfail
    xfail=$(sed -n 's/^# XFAIL: *//p' "$HERE/$name.sh" | head -1)
    local ok=1 line
    local tier=nspawn
    [ $VM = 1 ] && tier=qemu
    line=$(printf '%-30s %6s s, %d boot(s), %s exit %s' "${name#scenarios/}" "$secs" "$boot" "$tier" "$exits")
    if [ "$result" = pass ] && [ -z "$xfail" ]; then
        echo "PASS $line"
        ok=0
    elif [ "$result" = pass ]; then
        echo "XPASS $line: passes although marked XFAIL ($xfail): remove the XFAIL line"
    elif [ -n "$xfail" ]; then
        echo "XFAIL $line: $result"
        echo "     known daemon bug: $xfail"
        echo "     log: $w/results/log (kept)"
        ok=3
    else
        echo "FAIL $line: $result"
        echo "     log: $w/results/log (kept)"
    fi
    [ -f "$w/results/report" ] && sed 's/^/     /' "$w/results/report"
    # A failed scenario's files stay for reading.
    if [ $ok = 0 ]; then overlay_down "$w" "$KEEP"; else overlay_down "$w" 1; fi
    return $ok
}

[ $BUILD = 1 ] && build
[ -x "$BIN/systemd_dbus" ] || die "no binaries in $BIN: run without --no-build"
# The VM tier builds its images per scenario (run_scenario), each variant once.
if [ $VM = 0 ]; then
    ROOTFS=$(rootfs_path) || exit 2
fi
mkdir -p "$RUN_DIR"

if [ $SHELL_MODE = 1 ]; then
    w="$RUN_DIR/shell"
    overlay_up "$w"
    guest_setup "$w"
    trap 'overlay_down "$w" 0' EXIT
    log "guest shell: login root (no password); binaries in /mcd-bin, scenarios in /mcd-vmtest"
    nspawn_cmd "$w" --boot --console=interactive
    "${NSPAWN[@]}"
    exit $?
fi

passed=0 failed=0 xfailed=0
total_start=$(date +%s.%N)
for s in "${SCENARIOS[@]}"; do
    run_scenario "$s"
    case $? in
    0) passed=$((passed + 1)) ;;
    3) xfailed=$((xfailed + 1)) ;;
    *) failed=$((failed + 1)) ;;
    esac
done
log "scenarios took $(elapsed "$total_start") s"
# Known failures are not passes: they are counted apart and do not fail the run.
if [ $xfailed -gt 0 ]; then
    echo "$passed passed, $failed failed, $xfailed known failures (XFAIL)"
else
    echo "$passed passed, $failed failed"
fi
[ $failed = 0 ]

#!/bin/bash
# Power-cut campaign: the daemon's update under real power loss. One QEMU guest (the VM tier's
# image, see vm-tests/README.md) runs the daemon as its systemd service in standalone mode and
# goes back and forth between two configs of 1,000 files each (a, b: 950 paths rewritten, 50
# added, 50 removed, in ten directories of /etc/mcd-power). Each cut: the guest desires the other
# config and says so on its second serial port; the host waits a random 0..WINDOW ms and kills
# QEMU with SIGKILL, boots the same disk again, and the guest checks what the cut left:
#   - before the daemon runs: every managed path is entirely a's or entirely b's (sha256 of the
#     contents against both configs; absent where that config has no such path); with no update
#     journal, every path is the stored config's (currentconfig); a journal that is there parses;
#   - after the daemon started: it rolled the journal back (it says so), ended Done on the config
#     desired.d holds, every path is that config's, and no journal, staging directory or temp
#     file is left.
# That boot then makes the next cut (N cuts: N+1 boots). See vm-tests/power/cut.sh.
#
# Usage: vm-tests/power-cut.sh [--cuts N] [--window MS] [--seed S] [--no-build] [--keep]
#   --cuts N     cuts to make (default 30)
#   --window MS  the kill comes 0..MS ms after the guest's "started" (uniform; default 15000:
#                under TCG here the release daemon wrote its journal 2.7-6.7 s after "started",
#                removed it (the commit) 6.9-12.9 s after and was Done at about 11 s, so the
#                cuts fall before the journal, between journal and commit, and after it)
#   --seed S     seed of the delays (default: random; printed, to repeat a campaign's delays)
#   --no-build   use the daemon of the last build (target/vm-tests/power-bin)
#   --keep       keep the run directory (disk, console, per-cut records) even when all passed
# Environment: MCD_VM_PROFILE (release, the default, or debug), MCD_VM_CACHE and
# CARGO_TARGET_DIR as for vm-tests/run.sh, MCD_VM_SCENARIO_TIMEOUT (seconds per boot, 900).
# Output: one line per cut (number, delay, the last milestone the guest reported before the
# kill, the phase the disk was in, the new files on disk, consistency, recovery, end state),
# then a summary line; the exit status is non-zero on any inconsistency or failed boot.
#
# The power cut, and QEMU's disk cache. SIGKILL ends QEMU at once: the guest's RAM is gone (its
# page cache, dirty buffers, requests QEMU had not taken yet), and nothing runs at shutdown.
# What QEMU had already handed to the host kernel stays in the image, because the host keeps
# running. A guest flush (fsync ends in a virtio FLUSH) makes QEMU (1) write its own caches,
# qcow2's L2 and refcount tables, to the image file, in every cache mode, cache=unsafe included
# (block/io.c, bdrv_co_flush: "Write back cached data to the OS even with cache=unsafe"), then
# (2) fdatasync the image, except with cache=unsafe. Only (1) matters when QEMU dies and the host
# does not, so every cache mode keeps what the guest flushed, and loses what it did not:
# writes still in the guest's page cache always, and completed writes to clusters of the qcow2
# overlay allocated since the last flush (their L2 entries were in QEMU's memory), as a disk's
# volatile write cache would. The default mode (writeback, as in vm-tests/run.sh) is used.
# What this does not model: a disk that reorders or tears writes it acknowledged before a flush
# beyond that; that is the filesystem's side of the contract (ext4's journal and barriers), not
# the daemon's.
#
# The kill's moment: "started" comes right after the desired config got its name, so 0..WINDOW
# covers the daemon noticing and rendering it, the plan, the journal, the staging of the
# pre-images, the batch of temp files and their fsyncs, the renames, the stored config, the
# commit (the journal's removal) and Done. The guest reports the journal's appearance and
# disappearance and Done as it sees them (every 50 ms); the table shows the last one the host
# had received when it killed QEMU ("live") beside the phase the disk was found in ("disk"):
# before-journal, journal (no new file durable yet), mid-files, files-written (every path new,
# journal not yet removed), committed. On ext4 the renames of an update's batch become durable
# together, at the first directory fsync after them (one commit of the filesystem's journal), so
# mid-files needs ext4's own periodic commit to fall within the renames: rare by design.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
. "$HERE/lib/common.sh"
. "$HERE/lib/rootfs.sh"
. "$HERE/lib/vmimage.sh"
. "$HERE/lib/qemu.sh"

CUTS=30 WINDOW=15000 SEED="" BUILD=1 KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --cuts) CUTS=${2:?--cuts needs a number}; shift ;;
    --window) WINDOW=${2:?--window needs milliseconds}; shift ;;
    --seed) SEED=${2:?--seed needs a number}; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "power-cut.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in CUTS WINDOW; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "power-cut.sh: --${v,,} must be a whole number, got '${!v}'" >&2; exit 2; }
done
[ "$CUTS" -ge 1 ] || { echo "power-cut.sh: --cuts must be at least 1" >&2; exit 2; }
[ -z "$SEED" ] || [[ $SEED =~ ^[0-9]+$ ]] || { echo "power-cut.sh: --seed must be a whole number, got '$SEED'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (as vm-tests/run.sh)"
ensure_qemu

TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RUN_DIR=${MCD_VM_RUN_DIR:-$TARGET/vm-tests/run}
# The daemon as packaged: optimised, no fail points (MCD_VM_PROFILE=debug for a debug build:
# under TCG it took 53 s for this update alone and over 40 s before its journal, which makes a
# cut cost about 3 minutes against 1.5), in a directory of its own so that vm-tests/run.sh's
# binaries stay as they are.
PROFILE=${MCD_VM_PROFILE:-release}
BIN="$TARGET/vm-tests/power-bin"
BOOT_TIMEOUT=${MCD_VM_SCENARIO_TIMEOUT:-900}
if [ $BUILD = 1 ]; then
    start=$(date +%s.%N)
    log "building the daemon (cargo, $PROFILE)"
    prof=()
    [ "$PROFILE" = release ] && prof=(--release)
    mkdir -p "$TARGET/vm-tests" "$BIN"
    (cd "$REPO" && cargo build --quiet "${prof[@]}" --bin machine-config-daemon) 2> "$TARGET/vm-tests/power-cargo.log" \
        || { cat "$TARGET/vm-tests/power-cargo.log" >&2; die "cargo build failed"; }
    install -m 0755 "$TARGET/$PROFILE/machine-config-daemon" "$BIN/machine-config-daemon"
    log "built in $(elapsed "$start") s"
fi
[ -x "$BIN/machine-config-daemon" ] || die "no binaries in $BIN: run without --no-build"
VMIMAGE=$(vmimage_path) || exit 2

W="$RUN_DIR/power-cut"
rm -rf "$W"
mkdir -p "$W/results/power" "$W/results/cuts" "$W/gen"
qemu-img create -q -f qcow2 -b "$VMIMAGE/disk.qcow2" -F qcow2 "$W/disk.qcow2" || die "qemu-img create failed"

# The two configs: file I of config X (a: 0..999, b: 0..949 and 1000..1049) in directory
# d<I/100>, 2..61 lines of text (100 B to 4.4 KiB), a different length in a and b.
gen_configs() {
    local x
    for x in a b; do
        awk -v x="$x" -v root="$W/gen/$x" 'BEGIN {
            for (i = 0; i < 1050; i++) {
                if (x == "a" && i >= 1000) continue
                if (x == "b" && i >= 950 && i < 1000) continue
                d = sprintf("%s/etc/mcd-power/d%02d", root, int(i / 100))
                system("mkdir -p " d)
                f = sprintf("%s/f%04d.conf", d, i)
                n = 2 + (i * 7 + (x == "b" ? 23 : 0)) % 60
                printf "# power-cut campaign: file %d of config %s\n", i, x > f
                for (j = 0; j < n; j++)
                    printf "config=%s file=%d line=%d abcdefghijklmnopqrstuvwxyz0123456789\n", x, i, j > f
                close(f)
            } }'
        (cd "$W/gen/$x" && find etc -type f | sort | xargs sha256sum) \
            | awk '{print "/" $2, $1}' > "$W/gen/$x.sums"
        {
            printf '{"apiVersion":"machineconfiguration.openshift.io/v1","kind":"MachineConfig",'
            printf '"metadata":{"name":"power-%s","labels":{"machineconfiguration.openshift.io/role":"worker"}},' "$x"
            printf '"spec":{"config":{"ignition":{"version":"3.4.0"},"storage":{"files":['
            local sep="" p
            while read -r p _; do
                printf '%s{"path":"%s","mode":420,"overwrite":true,"contents":{"source":"data:;base64,%s"}}' \
                    "$sep" "$p" "$(base64 -w0 "$W/gen/$x$p")"
                sep=,
            done < "$W/gen/$x.sums"
            printf ']}}}}\n'
        } > "$W/results/power/$x.json"
        mkdir -p "$W/gen/$x.d"
        cp "$W/results/power/$x.json" "$W/gen/$x.d/50-scenario.json"
        "$BIN/machine-config-daemon" render --pool worker "$W/gen/$x.d" > "$W/gen/$x.rendered" \
            || die "render of config $x failed"
        grep -o '"name": *"rendered-worker-[0-9a-f]*"' "$W/gen/$x.rendered" | head -1 \
            | sed 's/.*"\(rendered-worker-[0-9a-f]*\)"/\1/' > "$W/results/power/$x.name"
        [ -s "$W/results/power/$x.name" ] || die "no rendered name for config $x"
    done
    # Every path of either config, with its sha256 in each (or absent).
    cut -d' ' -f1 "$W/gen/a.sums" "$W/gen/b.sums" | sort -u > "$W/gen/paths"
    for x in a b; do
        awk -v S="$W/gen/$x.sums" 'BEGIN { while ((getline l < S) > 0) { split(l, f, " "); s[f[1]] = f[2] } }
            { print $1, ($1 in s) ? s[$1] : "absent" }' "$W/gen/paths" > "$W/results/power/$x.state"
    done
}
gen_configs
echo power/cut > "$W/results/scenario"
[ -n "$SEED" ] || SEED=$(( $(date +%s%N) % 1000000 ))
RANDOM=$SEED

# The guest's second serial port: QEMU opens <path>.in and <path>.out (FIFOs) read-write; the
# host holds .out open read-write too, so neither side blocks on the other.
rm -f "$W/sig.in" "$W/sig.out"
mkfifo "$W/sig.in" "$W/sig.out"
exec {SIGFD}<> "$W/sig.out"

now_us() { echo "${EPOCHREALTIME/./}"; }
us_to_s() { printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); }

log "power-cut campaign: $CUTS cut(s), window 0..$WINDOW ms, seed $SEED, run directory $W"
printf '%-4s %7s %-9s %-15s %-9s %-10s %-11s %-8s %s\n' \
    cut delay_ms live disk new_files consistent journal recovery end
fails=0 inconsistent=0 done_cuts=0
declare -A PHASES=() ENDS=() LIVE=()
total_start=$(date +%s.%N)
for ((boot = 0; boot <= CUTS; boot++)); do
    check=$boot cut=$((boot + 1))
    [ $cut -le "$CUTS" ] || cut=0
    printf 'CHECK=%d\nCUT=%d\n' "$check" "$cut" > "$W/results/power/plan"
    rm -f "$W/results/result" "$W/results/reason"
    delay_ms=""
    [ $cut = 0 ] || delay_ms=$(( ((RANDOM << 15) | RANDOM) % (WINDOW + 1) ))
    echo "=== power-cut boot $boot (check $check, cut $cut, delay ${delay_ms:--} ms)" >> "$W/console.log"
    qemu_args "$W" "$QEMU_CMDLINE"
    boot_start=$(date +%s.%N)
    qemu-system-x86_64 "${QEMU_ARGS[@]}" -chardev "pipe,id=sig,path=$W/sig" -serial chardev:sig \
        >> "$W/console.log" 2>&1 &
    qpid=$!
    deadline=$(( $(now_us) + BOOT_TIMEOUT * 1000000 ))
    kill_at="" live=none events="" killed=0 partial=
    while :; do
        t=$(now_us)
        if [ -n "$kill_at" ] && [ "$t" -ge "$kill_at" ]; then
            kill -KILL "$qpid" 2>/dev/null && killed=1
            break
        fi
        if [ "$t" -ge "$deadline" ]; then
            kill -KILL "$qpid" 2>/dev/null
            echo "fail: boot $boot timed out after ${BOOT_TIMEOUT}s" > "$W/results/result"
            break
        fi
        wait_us=1000000
        [ -z "$kill_at" ] || wait_us=$((kill_at - t))
        [ "$wait_us" -le 1000000 ] || wait_us=1000000
        # A read that times out mid-line keeps what it read in `line`: it is kept here and the
        # line's rest is added to it (otherwise `started N` split by the timeout is lost).
        if IFS= read -r -t "$(us_to_s "$wait_us")" -u "$SIGFD" line; then
            line=$partial$line partial=
            line=${line%$'\r'}
            case "$line" in
            "started $cut")
                started=$(now_us)
                kill_at=$((started + delay_ms * 1000))
                ;;
            journal* | commit* | done*)
                live=${line%% *}
                events="$events ${line%% *}@${line#* }ms"
                ;;
            esac
        else
            partial=$partial$line
            kill -0 "$qpid" 2>/dev/null || break
        fi
    done
    wait "$qpid" 2>/dev/null
    boot_secs=$(elapsed "$boot_start")
    echo "=== power-cut boot $boot ended after $boot_secs s (killed: $killed; guest milestones:${events:- none})" >> "$W/console.log"
    if [ "$check" -gt 0 ]; then
        rec="$W/results/cuts/$check.txt"
        if [ -s "$rec" ]; then
            # shellcheck disable=SC1090
            phase=$(sed -n 's/^phase=//p' "$rec") new=$(sed -n 's/^new_files=//p' "$rec")
            raw_ok=$(sed -n 's/^raw_ok=//p' "$rec") journal=$(sed -n 's/^journal=//p' "$rec")
            recovered=$(sed -n 's/^recovered=//p' "$rec") end=$(sed -n 's/^end=//p' "$rec")
            end_ok=$(sed -n 's/^end_ok=//p' "$rec")
            from=$(sed -n 's/^FROM=//p' "$W/results/cuts/$check.plan")
            case "$end" in "Done:$from") end_cfg=old ;; Done:*) end_cfg=new ;; *) end_cfg="?" ;; esac
            [ -n "$end_ok" ] || end_ok=no
            printf '%-4s %7s %-9s %-15s %-9s %-10s %-11s %-8s %s\n' "$check" "$prev_delay" "$prev_live" \
                "$phase" "$new" "$raw_ok" "$journal" "${recovered:--}" \
                "Done on $end_cfg ($end_ok)"
            PHASES[$phase]=$((${PHASES[$phase]:-0} + 1))
            [ "$end_ok" = yes ] && ENDS[$end_cfg]=$((${ENDS[$end_cfg]:-0} + 1))
            LIVE[$prev_live]=$((${LIVE[$prev_live]:-0} + 1))
            if [ "$raw_ok" != yes ]; then
                inconsistent=$((inconsistent + 1))
                echo "     INCONSISTENT: $(sed -n 's/^raw_why=//p' "$rec")"
            fi
            [ "$end_ok" = yes ] || echo "     after recovery: $(sed -n 's/^end_why=//p' "$rec")"
            done_cuts=$((done_cuts + 1))
        else
            printf '%-4s %7s %-9s no record: the check did not run\n' "$check" "$prev_delay" "$prev_live"
        fi
    fi
    if [ $cut -gt 0 ] && [ $killed = 1 ]; then
        prev_delay=$delay_ms prev_live=$live
        continue
    fi
    # No cut this boot: the last boot, or a failure.
    result=$(cat "$W/results/result" 2>/dev/null || echo "no result (QEMU ended after $boot_secs s)")
    [ -f "$W/results/reason" ] && result="$result: $(head -c 600 "$W/results/reason")"
    if [ $cut -gt 0 ] || [ "$result" != pass ]; then
        echo "FAIL boot $boot (check $check, cut $cut): $result"
        echo "     guest log: $W/results/log; console: $W/console.log"
        fails=$((fails + 1))
    fi
    break
done

summary=""
for k in before-journal journal mid-files files-written committed; do
    [ -n "${PHASES[$k]:-}" ] && summary="$summary, $k ${PHASES[$k]}"
done
live_summary=""
for k in none journal commit done; do
    [ -n "${LIVE[$k]:-}" ] && live_summary="$live_summary, $k ${LIVE[$k]}"
done
printf '%d of %d cuts checked in %s s: %d inconsistent; disk phases%s; last milestone before the cut%s; Done on old %d, on new %d; seed %d\n' \
    "$done_cuts" "$CUTS" "$(elapsed "$total_start")" "$inconsistent" "${summary:- -}" "${live_summary:- -}" \
    "${ENDS[old]:-0}" "${ENDS[new]:-0}" "$SEED"
ok=1
[ "$done_cuts" = "$CUTS" ] && [ $inconsistent = 0 ] && [ $fails = 0 ] \
    && [ $(( ${ENDS[old]:-0} + ${ENDS[new]:-0} )) = "$CUTS" ] || ok=0
if [ $ok = 1 ] && [ $KEEP = 0 ]; then
    rm -rf "$W"
else
    log "run directory kept: $W (results/cuts/N.txt per cut, results/log, console.log)"
fi
[ $ok = 1 ]

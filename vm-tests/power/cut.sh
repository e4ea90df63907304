# The guest's side of the power-cut campaign (vm-tests/power-cut.sh runs it at every boot of
# one guest and reads what it writes; see there for the campaign and the reasoning).
#
# Inputs, on the results share (written by the host): power/plan (CHECK: the cut this boot
# checks, 0 for none; CUT: the cut this boot ends with, 0 for none), power/{a,b}.json (two
# MachineConfigs of 1,000 files each under /etc/mcd-power), power/{a,b}.name (their rendered
# names), power/{a,b}.state (each managed path with the sha256 of its contents in that config,
# or `absent`).
#
# One boot:
# 1. Check the cut CHECK, first as the power cut left the disk (the daemon's unit is started by
#    this script, never enabled, so nothing has touched the disk yet): every managed path is
#    that of one config or the other, byte for byte; without an update journal every path is
#    that of the stored config (currentconfig); the journal, when there is one, parses. Then
#    as the daemon leaves it: started, it recovers the interrupted update and ends Done on the
#    desired config, every path that config's, no journal, staging directory or temp file left,
#    and a journal found at the boot means the daemon reported rolling it back. The outcome goes
#    to cuts/CHECK.txt (key=value lines), with copies of any bad file under cuts/CHECK.evidence/.
# 2. Cut CUT: desire the other config, say `started CUT` on the second serial port (/dev/ttyS1,
#    a FIFO on the host), then report the update's milestones there as they happen (`journal
#    MS`, `commit MS`, `done MS`, milliseconds after `started`) until the host kills QEMU.
#    With CUT=0, power off (the runner records `pass`).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
IN=$MCD_RESULTS/power
OUT=$MCD_RESULTS/cuts
mkdir -p "$OUT"
CHECK=0 CUT=0
. "$IN/plan"
MANAGED=/etc/mcd-power
JOURNAL=$MCD_STATE_DIR/journal
CURRENT=$MCD_STATE_DIR/currentconfig
SIG=/dev/ttyS1

# which_config RENDERED-NAME: a, b or `?`.
which_config() {
    case "$1" in
    "$(cat "$IN/a.name")") echo a ;;
    "$(cat "$IN/b.name")") echo b ;;
    *) echo "?" ;;
    esac
}

# The managed paths as they are: one line each, `path sha256`, `path absent` or `path other`
# (anything but a regular file), in the order of the state files.
disk_state() {
    local p files=()
    while read -r p _; do
        if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then
            echo "$p other"
        elif [ ! -e "$p" ]; then
            echo "$p absent"
        else
            files+=("$p")
        fi
    done < "$IN/a.state"
    [ ${#files[@]} -eq 0 ] || sha256sum "${files[@]}" | awk '{print $2, $1}'
}

# classify: compares the disk with both configs; sets N_A, N_B, N_BAD (paths matching neither)
# and BAD (the first bad paths, with what is there).
classify() {
    local out
    out=$(disk_state | awk -v A="$IN/a.state" -v B="$IN/b.state" '
        BEGIN { while ((getline l < A) > 0) { split(l, f, " "); a[f[1]] = f[2] }
                while ((getline l < B) > 0) { split(l, f, " "); b[f[1]] = f[2] } }
        { if ($2 == a[$1]) na++; else if ($2 == b[$1]) nb++;
          else { nbad++; if (nbad <= 5) bad = bad " " $1 "=" $2 } }
        END { printf "N_A=%d N_B=%d N_BAD=%d BAD=\"%s\"\n", na, nb, nbad, bad }')
    eval "$out"
}

# Writes key=value to this check's record.
rec() { echo "$1=$2" >> "$OUT/$CHECK.txt"; }

# Milestones to the host, on the second serial port.
signal() { echo "$*" > "$SIG"; }

check_cut() {
    local from to
    . "$OUT/$CHECK.plan"   # from, to: the configs (a, b) of the cut
    from=$FROM to=$TO
    : > "$OUT/$CHECK.txt"
    [ "$(systemctl is-active "$MCD_UNIT")" != active ] || fail "the daemon runs before the check"
    local ok=yes why=""
    # The disk as the power cut left it.
    local journal=none jold="" jnew=""
    if [ -e "$JOURNAL" ]; then
        if jnames=$(jq -er '"\(.old // "-") \(.new)"' "$JOURNAL" 2>/dev/null); then
            read -r jold jnew <<< "$jnames"
            journal="present"
        else
            journal="unparsable"
            ok=no why="$why; the update journal does not parse"
        fi
    fi
    local cc
    cc=$(jq -er .metadata.name "$CURRENT" 2>/dev/null) || cc="unreadable"
    cc=$(which_config "$cc")
    [ "$cc" = "$from" ] || [ "$cc" = "$to" ] || { ok=no why="$why; currentconfig is neither config ($cc)"; }
    classify
    local n_from n_to
    if [ "$from" = a ]; then n_from=$N_A n_to=$N_B; else n_from=$N_B n_to=$N_A; fi
    local total=$((N_A + N_B + N_BAD))
    [ "$N_BAD" = 0 ] || { ok=no why="$why; $N_BAD path(s) match neither config:$BAD"; }
    if [ "$journal" = none ] && [ "$N_BAD" = 0 ]; then
        # No journal: nothing to roll back, so the disk must be the stored config exactly.
        if [ "$cc" = "$from" ] && [ "$n_from" != "$total" ]; then
            ok=no why="$why; no journal and currentconfig is the old config, but $n_to path(s) are new"
        elif [ "$cc" = "$to" ] && [ "$n_to" != "$total" ]; then
            ok=no why="$why; no journal and currentconfig is the new config, but $n_from path(s) are old"
        fi
    fi
    if [ "$journal" = present ]; then
        [ "$(which_config "$jnew")" = "$to" ] || { ok=no why="$why; the journal's new config is $jnew"; }
    fi
    local phase
    if [ "$journal" = none ] && [ "$cc" = "$from" ]; then
        phase=before-journal
    elif [ "$journal" = none ]; then
        phase=committed
    elif [ "$n_to" = 0 ]; then
        phase=journal
    elif [ "$n_to" = "$total" ]; then
        phase=files-written
    else
        phase=mid-files
    fi
    local desired
    desired=$(sha256sum "$MCD_DESIRED/50-scenario.json" | cut -d' ' -f1)
    case "$desired" in
    "$(sha256sum "$IN/a.json" | cut -d' ' -f1)") desired=a ;;
    "$(sha256sum "$IN/b.json" | cut -d' ' -f1)") desired=b ;;
    *) desired="?" ;;
    esac
    rec phase "$phase"
    rec journal "$journal"
    rec current "$cc"
    rec desired "$desired"
    rec new_files "$n_to/$total"
    rec bad_files "$N_BAD"
    rec raw_ok "$ok"
    rec raw_why "${why#; }"
    if [ "$N_BAD" != 0 ]; then
        mkdir -p "$OUT/$CHECK.evidence"
        local p
        for p in $BAD; do
            p=${p%%=*}
            [ -f "$p" ] && cp "$p" "$OUT/$CHECK.evidence/$(echo "$p" | tr / _)"
        done
        [ -f "$JOURNAL" ] && cp "$JOURNAL" "$OUT/$CHECK.evidence/journal"
    fi
    [ "$desired" = "?" ] && fail "cut $CHECK: the desired config is neither a nor b"

    # The daemon recovers the interrupted update and applies the desired config.
    systemctl start "$MCD_UNIT" || { journalctl -u "$MCD_UNIT" --no-pager | tail -30; fail "cut $CHECK: the daemon did not start"; }
    local want
    want=$(cat "$IN/$desired.name")
    wait_done "$want" 900
    rec recovery_s "$WAITED"
    local after_ok=yes after_why=""
    classify
    local n_want=$N_A
    [ "$desired" = b ] && n_want=$N_B
    [ "$n_want" = "$total" ] || { after_ok=no after_why="$after_why; after recovery $((total - n_want)) path(s) are not the desired config's:$BAD"; }
    [ ! -e "$JOURNAL" ] || { after_ok=no after_why="$after_why; the journal is still there"; }
    [ ! -e "$MCD_STATE_DIR/staging" ] || { after_ok=no after_why="$after_why; the staging directory is still there"; }
    local tmps
    tmps=$(find "$MANAGED" -name '*.mcdtmp' | head -3 | tr '\n' ' ')
    [ -z "$tmps" ] || { after_ok=no after_why="$after_why; temp files left: $tmps"; }
    [ "$(which_config "$(jq -r .metadata.name "$CURRENT")")" = "$desired" ] \
        || { after_ok=no after_why="$after_why; currentconfig is not the desired config"; }
    local recovered=not-needed
    if [ "$journal" != none ]; then
        if journalctl -b -u "$MCD_UNIT" --no-pager -o cat | grep -q "rolled back the interrupted update"; then
            recovered=rolled-back
        else
            recovered=no
            after_ok=no after_why="$after_why; a journal was there but the daemon reported no rollback"
        fi
    fi
    rec recovered "$recovered"
    rec end "Done:$desired"
    rec end_ok "$after_ok"
    rec end_why "${after_why#; }"
    rec status "$("$MCD" status 2>&1 | sed -n 2p)"
    # The daemon's own account of the recovery and the update, with monotonic times.
    rec daemon_log "$(journalctl -b -u "$MCD_UNIT" --no-pager -o short-monotonic \
        | grep -E 'starting:|rolled back|desiredConfig|-> Working|update started|journal written|files written|update applied|-> Done' \
        | sed -E 's/^\[ *([0-9.]+)\].*machine-config-daemon\[[0-9]+\]: /\1 /' | cut -c1-120 | tr '\n' ';')"
    report "cut $CHECK: phase $phase, journal $journal, new files $n_to/$total, consistent $ok, recovered $recovered, Done on $desired ($after_ok)"
    # An inconsistent disk is a finding to count: the campaign goes on when the daemon got the
    # node back to Done on a consistent disk, and stops otherwise.
    [ "$after_ok" = yes ] || fail "cut $CHECK after recovery:${after_why#;}"
}

if [ "$CHECK" = 0 ]; then
    # The first boot: the old config applied (first apply of 1,000 files) and made durable.
    policy_set <<'YAML'
    files:
      - path: /etc/mcd-power
        actions:
          - type: None
YAML
    mkdir -p "$MCD_DESIRED"
    cp "$IN/a.json" "$MCD_DESIRED/.50-scenario.json.tmp"
    mv "$MCD_DESIRED/.50-scenario.json.tmp" "$MCD_DESIRED/50-scenario.json"
    systemctl start "$MCD_UNIT" || { journalctl -u "$MCD_UNIT" --no-pager | tail -30; fail "the daemon did not start"; }
    wait_done "$(cat "$IN/a.name")" 900
    report "first apply of a: Done in ${WAITED} s after the start returned"
    sync
else
    check_cut
fi

[ "$CUT" = 0 ] && exit 0

# The cut: from the config the node is Done on to the other one.
FROM=$(which_config "$(st .currentConfig)")
case "$FROM" in a) TO=b ;; b) TO=a ;; *) fail "Done on neither config" ;; esac
printf 'FROM=%s\nTO=%s\n' "$FROM" "$TO" > "$OUT/$CUT.plan"
stty -F "$SIG" raw -echo 2>/dev/null || true
# A silent descriptor: `read -t` on it is a sleep without a process.
mkfifo /run/mcd-power-quiet
exec {quiet}<> /run/mcd-power-quiet
# The desired file's data is made durable before it gets its name (a tool writing it would do
# the same); whether the rename survives the cut is the cut's business: either way the node must
# end Done on the config desired.d holds after the boot.
cp "$IN/$TO.json" "$MCD_DESIRED/.50-scenario.json.tmp"
sync "$MCD_DESIRED/.50-scenario.json.tmp"
want=$(cat "$IN/$TO.name")
mv "$MCD_DESIRED/.50-scenario.json.tmp" "$MCD_DESIRED/50-scenario.json"
touch /run/mcd-power-t0
t0=${EPOCHREALTIME/./}
signal "started $CUT"
ms() { echo $(((${EPOCHREALTIME/./} - t0) / 1000)); }
# Milestones, watched every 50 ms with shell built-ins only (one vCPU: the watch must not slow
# the update down): the journal appears, then goes (the commit; a journal that came and went
# between two looks shows as a stored config newer than the start), then the status says Done.
stage=0 polls=0
while [ $stage -lt 3 ]; do
    read -r -t 0.05 -u "$quiet" _ || true
    polls=$((polls + 1))
    if [ $stage = 0 ] && [ -e "$JOURNAL" ]; then
        signal "journal $(ms)"
        stage=1
    elif [ $stage = 0 ] && [ "$CURRENT" -nt /run/mcd-power-t0 ]; then
        signal "commit $(ms)"
        stage=2
    elif [ $stage = 1 ] && [ ! -e "$JOURNAL" ]; then
        signal "commit $(ms)"
        stage=2
    elif [ $stage = 2 ] && [ $((polls % 4)) = 0 ] \
        && jq -e --arg c "$want" '.state == "Done" and .currentConfig == $c' "$MCD_STATUS" > /dev/null 2>&1; then
        signal "done $(ms)"
        stage=3
    fi
    [ $polls -lt 18000 ] || fail "cut $CUT: the update did not end within 900 s"
done
# The host cuts the power at a moment of its choosing, possibly after this.
read -r -t 900 -u "$quiet" _ || true
fail "cut $CUT: still running 900 s after the update ended: the host did not cut the power"

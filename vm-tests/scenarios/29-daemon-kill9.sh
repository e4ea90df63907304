# kill -9 of the daemon in the middle of an update (a fail point holds it after the first file is
# written, until the scenario lets it go): systemd restarts it (Restart=on-failure) and the restarted daemon rolls the
# interrupted update back from its journal, so the files are all old, never a mix; then it
# applies the desired config. Round 1 sets the desired config back to the old one while the
# daemon is down (so the rollback is all that happens: all old, Done on v1); round 2 leaves
# it (all new, Done on v2).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
FILES="/etc/mcd-test/a.conf /etc/mcd-test/b.conf /etc/mcd-test/c.conf"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: None
YAML
config() {
    mc_reset
    for f in $FILES; do mc_file "$f" "version=$1"$'\n'; done
    mc_desire "v$1"
}
versions() { for f in $FILES; do cut -d= -f2 "$f"; done | tr '\n' ' ' | sed 's/ $//'; }
nrestarts() { systemctl show -p NRestarts --value "$MCD_UNIT"; }

config 1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10
# The fail point, for this daemon's unit only: after each operation of an update, the daemon
# holds while the pipe $MCD_HOLD exists (guest/daemon.sh).
mcd_hold_point host::after_op
wait_done "$v1" 10

# kill9_mid_update: writes v2, waits until the daemon holds with the update half done (the
# operation that held was a file's write), kills it there.
kill9_mid_update() {
    pid=$(mcd_pid)
    mkfifo "$MCD_HOLD"
    config 2
    v2=$MC_RENDERED
    hold_wait
    until case "$(versions)" in *2*) true ;; *) false ;; esac; do
        hold_release
        hold_wait
    done
    # Held: the restarted daemon's own passes through the fail point (its rollback) go by.
    rm "$MCD_HOLD"
    mixed=$(versions)
    case "$mixed" in *1*2* | *2*1*) ;; *) fail "not in the middle of an update: versions $mixed" ;; esac
    [ -e "$MCD_STATE_DIR/journal" ] || fail "no update journal during the update"
    assert_eq Working "$(st .state)" "state during the update"
    kill -9 "$pid"
    hold_release
    report "$1: kill -9 of the daemon (pid $pid) held with files at versions [$mixed], update journal present"
}

# wait_restarted OLD_PID COUNT: a new daemon process, restarted COUNT times in all by systemd.
wait_restarted() {
    local i
    for i in $(seq 300); do
        [ "$(nrestarts)" = "$2" ] && [ "$(mcd_pid)" != "$1" ] && [ "$(mcd_pid)" != 0 ] && return 0
        sleep 0.05
    done
    fail "the daemon was not restarted by systemd (NRestarts $(nrestarts), MainPID $(mcd_pid))"
}

# Round 1: desired back to v1 while the daemon is down.
kill9_mid_update "round 1"
config 1
wait_restarted "$pid" 1
wait_done "$v1" 20
assert_eq "1 1 1" "$(versions)" "round 1: files after the recovery"
assert_eq "$v1" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "round 1: currentconfig"
[ ! -e "$MCD_STATE_DIR/journal" ] || fail "round 1: update journal left behind"
journalctl -u "$MCD_UNIT" --no-pager -o cat | grep -q "rolled back the interrupted update" \
    || fail "round 1: the restarted daemon did not report a rollback"
report "round 1: systemd restarted it (NRestarts 1), rolled back: versions [$(versions)], Done on v1"

# Round 2: the desired config stays v2.
kill9_mid_update "round 2"
wait_restarted "$pid" 2
wait_done "$v2" 30
assert_eq "2 2 2" "$(versions)" "round 2: files after the recovery and the update"
assert_eq "$v2" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "round 2: currentconfig"
[ ! -e "$MCD_STATE_DIR/journal" ] || fail "round 2: update journal left behind"
assert_eq 2 "$(journalctl -u "$MCD_UNIT" --no-pager -o cat | grep -c "rolled back the interrupted update")" \
    "rollbacks reported"
report "round 2: systemd restarted it (NRestarts 2), rolled back then applied v2: versions [$(versions)], Done on v2"

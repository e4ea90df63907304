# SIGTERM in the middle of an update (systemctl stop while a fail point holds the update after its
# first file; the hold ends once the daemon has logged the SIGTERM): the daemon finishes the
# update, then exits cleanly; every file is new.
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
config 1
mcd_start
wait_done "$MC_RENDERED" 10
mcd_hold_point host::after_op
wait_done "$MC_RENDERED" 10
mkfifo "$MCD_HOLD"
config 2
v2=$MC_RENDERED
hold_wait
until case "$(versions)" in *2*) true ;; *) false ;; esac; do
    hold_release
    hold_wait
done
rm "$MCD_HOLD"
mixed=$(versions)
case "$mixed" in *1*) ;; *) fail "not in the middle of an update: versions $mixed" ;; esac
# (Without the pipe's write end: the hold ends only when no writer has it open.)
systemctl stop "$MCD_UNIT" 3>&- &
stop=$!
# The daemon has the SIGTERM while it is held: the update is still half done.
wait_journal "SIGTERM during an update: exiting once it has finished"
assert_eq "$mixed" "$(versions)" "files while the daemon is held, after its SIGTERM"
assert_eq deactivating "$(systemctl show -p ActiveState --value "$MCD_UNIT")" "unit state while held"
hold_release
wait "$stop" || fail "systemctl stop failed"
assert_eq "2 2 2" "$(versions)" "files after the stop"
assert_eq "$v2" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "currentconfig after the stop"
[ ! -e "$MCD_STATE_DIR/journal" ] || fail "update journal left behind"
assert_eq success "$(systemctl show -p Result --value "$MCD_UNIT")" "unit Result (exit 0)"
assert_eq 0 "$(systemctl show -p ExecMainStatus --value "$MCD_UNIT")" "exit status"
report "systemctl stop while held with files at [$mixed]: SIGTERM logged, the update finished once released, exit 0, files [$(versions)], currentconfig v2"

# SIGTERM in the middle of an update (systemctl stop while a fail point holds the update after its
# first file): the daemon finishes the update, then exits cleanly; every file is new.
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
mkdir -p /etc/systemd/system/$MCD_UNIT.d
printf '[Service]\nEnvironment=FAILPOINTS=host::after_op=1*sleep(2000)\n' \
    > /etc/systemd/system/$MCD_UNIT.d/50-failpoint.conf
systemctl daemon-reload
systemctl restart "$MCD_UNIT"
config 2
v2=$MC_RENDERED
for _ in $(seq 200); do case "$(versions)" in *2*) break ;; esac; sleep 0.02; done
mixed=$(versions)
case "$mixed" in *1*) ;; *) fail "not in the middle of an update: versions $mixed" ;; esac
start=$(date +%s.%N)
systemctl stop "$MCD_UNIT"
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
assert_eq "2 2 2" "$(versions)" "files after the stop"
assert_eq "$v2" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "currentconfig after the stop"
[ ! -e "$MCD_STATE_DIR/journal" ] || fail "update journal left behind"
assert_eq success "$(systemctl show -p Result --value "$MCD_UNIT")" "unit Result (exit 0)"
assert_eq 0 "$(systemctl show -p ExecMainStatus --value "$MCD_UNIT")" "exit status"
report "systemctl stop with files at [$mixed]: waited $took s for the update, exit 0, files [$(versions)], currentconfig v2"

# A `Reload` of a unit that has no ExecReload: the update fails, the files are rolled back (the
# changed one restored, the new one removed, currentconfig still the old config), the node is
# Degraded with the error; going back to the old desired config makes it Done.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: Reload
            reload:
              serviceName: mcd-test-noreload.service
YAML
NORELOAD='[Unit]
Description=mcd vm-test service without ExecReload

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target'
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test-noreload.service true "$NORELOAD"
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10
systemctl start mcd-test-noreload.service
pid=$(main_pid mcd-test-noreload.service)

mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_file /etc/mcd-test/added.conf "added by v2"$'\n'
mc_unit mcd-test-noreload.service true "$NORELOAD"
mc_desire v2
v2=$MC_RENDERED
wait_status '.state == "Degraded"' 30 "Degraded after the failed reload"
report "desired v2 -> Degraded in $WAITED s: $(st .reason)"
assert_eq "reload mcd-test-noreload.service: unit has no ExecReload; rolled back to $v1" "$(st .reason)" "reason"
assert_eq "version=1" "$(cat /etc/mcd-test/app.conf)" "app.conf rolled back"
[ ! -e /etc/mcd-test/added.conf ] || fail "added.conf left behind by the rollback"
assert_eq "$v1" "$(st .currentConfig)" "currentConfig"
assert_eq "$v2" "$(st .desiredConfig)" "desiredConfig"
assert_eq "$v1" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "stored currentconfig"
assert_eq False "$(cond UpdateComplete)" "UpdateComplete"
assert_eq "$pid" "$(main_pid mcd-test-noreload.service)" "the service kept running"
[ ! -e "$MCD_STATE_DIR/journal" ] || fail "update journal left behind"
report "files rolled back (app.conf version=1, added.conf gone), currentconfig $v1"

# Back to v1: nothing to write, the node is Done again.
mc_reset
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test-noreload.service true "$NORELOAD"
mc_desire v1
wait_done "$v1" 10
report "desired back to v1 -> Done in $WAITED s"

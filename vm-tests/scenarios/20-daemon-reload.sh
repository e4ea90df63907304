# The daemon (machine-config-daemon.service) under a `Reload` policy: a changed file reloads the
# service (its ExecReload ran and saw the new file), MainPID unchanged, no reboot, Done.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: Reload
            reload:
              serviceName: mcd-test.service
YAML
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10
systemctl start mcd-test.service
pid=$(main_pid mcd-test.service) boot=$(boot_id)
[ ! -e /run/mcd-test-reloaded ] || fail "reloaded before the update"

mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v2
wait_done "$MC_RENDERED" 30
report "desired v2 written -> Done on $MC_RENDERED in ${WAITED} s"
assert_eq "Reload(mcd-test.service)" "$(plan_actions)" "plan actions"
assert_eq "version=2" "$(cat /run/mcd-test-reloaded 2>&1)" "what ExecReload saw"
assert_eq "$pid" "$(main_pid mcd-test.service)" "MainPID of mcd-test.service after the reload"
assert_eq active "$(systemctl is-active mcd-test.service)" "mcd-test.service"
assert_eq True "$(cond UpdateComplete)" "UpdateComplete"
assert_eq True "$(cond UpdatePostActionComplete)" "UpdatePostActionComplete"
assert_eq "applied $MC_RENDERED" "$(st .lastOutcome)" "lastOutcome (nothing skipped)"
assert_no_reboot "$boot"
report "ExecReload ran (saw version=2), MainPID $pid unchanged, no reboot"

# The daemon under a `None` policy: the file is written and nothing else happens (the service
# is neither reloaded nor restarted, no reboot), Done.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: None
YAML
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v1
mcd_start
wait_done "$MC_RENDERED" 10
systemctl start mcd-test.service
pid=$(main_pid mcd-test.service) dpid=$(mcd_pid) boot=$(boot_id)
since=$(systemctl show -p ActiveEnterTimestampMonotonic --value mcd-test.service)

mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v2
wait_done "$MC_RENDERED" 30
report "desired v2 written -> Done on $MC_RENDERED in ${WAITED} s"
assert_eq "None" "$(plan_actions)" "plan actions"
assert_eq "version=2" "$(cat /etc/mcd-test/app.conf)" "file written"
assert_eq "$pid" "$(main_pid mcd-test.service)" "MainPID of mcd-test.service"
assert_eq "$since" "$(systemctl show -p ActiveEnterTimestampMonotonic --value mcd-test.service)" "ActiveEnterTimestamp"
[ ! -e /run/mcd-test-reloaded ] || fail "mcd-test.service was reloaded"
assert_eq "version=1" "$(cat /run/mcd-test-started)" "the service was not restarted"
assert_eq "$dpid" "$(mcd_pid)" "the daemon's own MainPID"
assert_no_reboot "$boot"
report "file written, service untouched (MainPID $pid), no reboot"

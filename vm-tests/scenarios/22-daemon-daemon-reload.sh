# The daemon under a `DaemonReload` policy for a unit: after the unit's definition changes,
# systemd has re-read it (NeedDaemonReload=no, the new Description and Environment are loaded),
# the running service is left alone, no reboot, Done.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    units:
      - name: mcd-test.service
        actions:
          - type: DaemonReload
YAML
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test.service true "$(test_unit 1 Environment=MCD_TEST_VERSION=1)"
mc_desire v1
mcd_start
wait_done "$MC_RENDERED" 10
systemctl start mcd-test.service
pid=$(main_pid mcd-test.service) boot=$(boot_id)
assert_eq "mcd vm-test service v1" "$(systemctl show -p Description --value mcd-test.service)" "Description before"

mc_reset
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test.service true "$(test_unit 2 Environment=MCD_TEST_VERSION=2)"
mc_desire v2
wait_done "$MC_RENDERED" 30
report "desired v2 written -> Done on $MC_RENDERED in ${WAITED} s"
assert_eq "DaemonReload" "$(plan_actions)" "plan actions"
assert_eq no "$(systemctl show -p NeedDaemonReload --value mcd-test.service)" "NeedDaemonReload"
assert_eq "mcd vm-test service v2" "$(systemctl show -p Description --value mcd-test.service)" "Description loaded"
assert_eq "MCD_TEST_VERSION=2" "$(systemctl show -p Environment --value mcd-test.service)" "Environment loaded"
assert_eq "$pid" "$(main_pid mcd-test.service)" "MainPID (a daemon-reload restarts nothing)"
assert_no_reboot "$boot"
report "NeedDaemonReload=no, Description 'mcd vm-test service v2' and MCD_TEST_VERSION=2 loaded, MainPID unchanged"

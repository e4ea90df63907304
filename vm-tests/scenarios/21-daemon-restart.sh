# The daemon under a `Restart` policy: a changed file restarts the service (new MainPID, the new
# process saw the new file), no reboot, Done.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: Restart
            restart:
              serviceName: mcd-test.service
YAML
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v1
mcd_start
wait_done "$MC_RENDERED" 10
systemctl start mcd-test.service
pid=$(main_pid mcd-test.service) boot=$(boot_id)
assert_eq "version=1" "$(cat /run/mcd-test-started)" "what the service saw at start"

mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_unit mcd-test.service true "$(test_unit)"
mc_desire v2
wait_done "$MC_RENDERED" 30
report "desired v2 written -> Done on $MC_RENDERED in ${WAITED} s"
assert_eq "Restart(mcd-test.service)" "$(plan_actions)" "plan actions"
new=$(main_pid mcd-test.service)
[ "$new" != "$pid" ] && [ "$new" != 0 ] || fail "MainPID after the restart: was $pid, now $new"
assert_eq "version=2" "$(cat /run/mcd-test-started)" "what the restarted service saw"
[ ! -e /run/mcd-test-reloaded ] || fail "the service was reloaded, not restarted"
assert_eq active "$(systemctl is-active mcd-test.service)" "mcd-test.service"
assert_no_reboot "$boot"
report "restarted: MainPID $pid -> $new, the new process saw version=2, no reboot"

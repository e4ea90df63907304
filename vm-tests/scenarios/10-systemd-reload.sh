# ReloadUnit through the client: the unit's ExecReload ran (marker file), MainPID unchanged.
. "$MCD_VMTEST/guest/lib.sh"
client_test reload_runs_exec_reload_and_keeps_main_pid
assert_eq active "$(systemctl is-active mcd-test-reload.service)" "unit after reload"

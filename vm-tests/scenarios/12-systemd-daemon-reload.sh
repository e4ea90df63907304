# daemon-reload after a unit file change: NeedDaemonReload=no and the new definition runs.
. "$MCD_VMTEST/guest/lib.sh"
client_test daemon_reload_makes_new_definition_active
assert_eq no "$(systemctl show -p NeedDaemonReload --value mcd-test-version.service)" NeedDaemonReload

# The errors an update fails with: no ExecReload, no such unit, a masked unit, a failing unit,
# a job timeout.
. "$MCD_VMTEST/guest/lib.sh"
client_test reload_without_exec_reload_is_a_clear_error
client_test missing_unit_is_a_clear_error
client_test masked_unit_is_a_clear_error
client_test failing_restart_reports_result_and_hint
client_test job_timeout_is_reported

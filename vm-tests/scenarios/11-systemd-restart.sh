# RestartUnit through the client: a new MainPID.
. "$MCD_VMTEST/guest/lib.sh"
client_test restart_gives_new_main_pid

# Benchmark (not run by default): D-Bus ReloadUnit vs `systemctl reload`, N=50 each.
. "$MCD_VMTEST/guest/lib.sh"
client_test bench_reload_dbus_vs_systemctl

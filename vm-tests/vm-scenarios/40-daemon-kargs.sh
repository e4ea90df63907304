# Kernel arguments on a real kernel: added ones are in /proc/cmdline after the reboot the daemon
# asks for and the node is Done; a removed one is gone after the next. The guest is a package
# host: the daemon writes /etc/kernel/cmdline (and runs kernel-install), and the harness boots
# QEMU with that file (the boot loader stand-in, see vm-tests/README.md).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
has_arg() { tr ' ' '\n' < /proc/cmdline | grep -qx -- "$1"; }
case "$MCD_BOOT" in
1)
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_desire v1
    mcd_start
    wait_done "$MC_RENDERED" 60
    mc_kargs mcd.a=1 mcd.b=two
    mc_desire v2
    echo "$MC_RENDERED" > "$MCD_KEEP/v2"
    wait_status '.postConfigAction == "Rebooting"' 300 "postConfigAction Rebooting"
    grep -q 'mcd.a=1 mcd.b=two' /etc/kernel/cmdline || fail "/etc/kernel/cmdline: $(cat /etc/kernel/cmdline)"
    report "boot 1: v2 staged in ${WAITED} s: /etc/kernel/cmdline is '$(cat /etc/kernel/cmdline)'"
    rebooting
    ;;
2)
    has_arg mcd.a=1 || fail "mcd.a=1 missing from /proc/cmdline: $(cat /proc/cmdline)"
    has_arg mcd.b=two || fail "mcd.b=two missing from /proc/cmdline: $(cat /proc/cmdline)"
    wait_done "$(cat "$MCD_KEEP/v2")" 120
    report "boot 2: Done on v2 with '$(cat /proc/cmdline)'"
    mc_kargs mcd.b=two
    mc_desire v3
    echo "$MC_RENDERED" > "$MCD_KEEP/v3"
    wait_status '.postConfigAction == "Rebooting"' 300 "postConfigAction Rebooting"
    rebooting
    ;;
3)
    has_arg mcd.a=1 && fail "mcd.a=1 still in /proc/cmdline: $(cat /proc/cmdline)"
    has_arg mcd.b=two || fail "mcd.b=two missing from /proc/cmdline: $(cat /proc/cmdline)"
    wait_done "$(cat "$MCD_KEEP/v3")" 120
    report "boot 3: Done on v3 with '$(cat /proc/cmdline)'"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

# Kernel-argument drift on a real kernel: /etc/kernel/cmdline edited behind the daemon's back,
# then a reboot: the booted command line lacks an argument of the current config, and the node
# is Degraded with the exact reason.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
case "$MCD_BOOT" in
1)
    mc_file /etc/mcd-test/app.conf "version=0"$'\n'
    mc_desire v0
    mcd_start
    wait_done "$MC_RENDERED" 60
    mc_kargs mcd.a=1
    mc_desire v1
    echo "$MC_RENDERED" > "$MCD_KEEP/v1"
    wait_status '.postConfigAction == "Rebooting"' 300 "postConfigAction Rebooting"
    rebooting
    ;;
2)
    wait_done "$(cat "$MCD_KEEP/v1")" 120
    sed -i 's/ *mcd\.a=1//' /etc/kernel/cmdline
    report "boot 2: Done; /etc/kernel/cmdline edited to '$(cat /etc/kernel/cmdline)'"
    systemctl --no-block reboot
    rebooting
    ;;
3)
    wait_status '.state == "Degraded"' 60 "Degraded"
    assert_eq 'expected kernel argument "mcd.a=1" missing from /proc/cmdline' "$(st .reason)" "reason"
    report "boot 3: Degraded: $(st .reason)"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

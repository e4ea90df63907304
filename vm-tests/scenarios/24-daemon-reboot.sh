# A change no policy matches: the daemon writes it and reboots the node (nspawn exits 133, the
# harness boots again); after the boot the daemon validates the disk and reports Done on the
# new config with RebootedNode True.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
case "$MCD_BOOT" in
1)
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_desire v1
    mcd_container_boot_id
    mcd_start
    wait_done "$MC_RENDERED" 10
    mc_reset
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_file /etc/mcd-test/unmatched.conf "no policy matches me"$'\n'
    mc_desire v2
    echo "$MC_RENDERED" > "$MCD_KEEP/v2"
    boot_id > "$MCD_KEEP/boot1"
    wait_status '.postConfigAction == "Rebooting"' 30 "postConfigAction Rebooting"
    report "boot 1: desired v2 -> Rebooting in ${WAITED} s (plan: $(plan_actions), state $(st .state))"
    assert_eq "Reboot" "$(plan_actions)" "plan actions"
    rebooting
    ;;
2)
    v2=$(cat "$MCD_KEEP/v2")
    [ "$(boot_id)" != "$(cat "$MCD_KEEP/boot1")" ] || fail "same boot id: no reboot"
    assert_eq active "$(systemctl is-active "$MCD_UNIT")" "the daemon after the boot (enabled)"
    wait_done "$v2" 10
    assert_eq True "$(cond RebootedNode)" "RebootedNode"
    assert_eq True "$(cond UpdateComplete)" "UpdateComplete"
    assert_eq "applied $v2; rebooted and validated" "$(st .lastOutcome)" "lastOutcome"
    assert_eq "no policy matches me" "$(cat /etc/mcd-test/unmatched.conf)" "the new file"
    [ ! -e "$MCD_STATE_DIR/reboot-pending" ] || fail "the reboot record is still there"
    report "boot 2: Done on $v2, RebootedNode True, '$(st .lastOutcome)'"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

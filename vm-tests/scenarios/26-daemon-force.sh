# The force file on a drifted node: the daemon rewrites every file and unit of the current
# config, deletes the force file and reboots; after the boot the node is Done (RebootedNode).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
MANAGED="/etc/mcd-test/app.conf /etc/mcd-test/other.conf /etc/systemd/system/mcd-test.service"
inodes() { stat -c '%n %i' $MANAGED; }
case "$MCD_BOOT" in
1)
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_file /etc/mcd-test/other.conf "other"$'\n'
    mc_unit mcd-test.service true "$(test_unit)"
    mc_desire v1
    echo "$MC_RENDERED" > "$MCD_KEEP/v1"
    mcd_container_boot_id
    mcd_start
    wait_done "$MC_RENDERED" 10
    echo tampered >> /etc/mcd-test/app.conf
    wait_status '.state == "Degraded"' 5 "drift"
    inodes > "$MCD_KEEP/inodes-before"
    boot_id > "$MCD_KEEP/boot1"
    "$MCD" force
    wait_status '.postConfigAction == "Rebooting"' 30 "Rebooting after the force file"
    report "boot 1: drifted node, force file -> Rebooting in $WAITED s (plan: $(plan_actions))"
    assert_eq "Reboot" "$(plan_actions)" "plan actions"
    # The daemon deletes the file once the update has run (the reboot is queued by then).
    for _ in $(seq 100); do [ -e /run/machine-config-daemon-force ] || break; sleep 0.05; done
    [ ! -e /run/machine-config-daemon-force ] || fail "force file still there 5 s after Rebooting"
    report "boot 1: force file deleted by the daemon"
    rebooting
    ;;
2)
    v1=$(cat "$MCD_KEEP/v1")
    [ "$(boot_id)" != "$(cat "$MCD_KEEP/boot1")" ] || fail "same boot id: no reboot"
    wait_done "$v1" 10
    assert_eq True "$(cond RebootedNode)" "RebootedNode"
    assert_eq "version=1" "$(cat /etc/mcd-test/app.conf)" "the drifted file, rewritten"
    [ ! -e /run/machine-config-daemon-force ] || fail "force file present after the reboot"
    while read -r path ino; do
        now=$(stat -c %i "$path")
        [ "$now" != "$ino" ] || fail "$path not rewritten (same inode $ino)"
    done < "$MCD_KEEP/inodes-before"
    report "boot 2: Done on $v1, all $(wc -l < "$MCD_KEEP/inodes-before") managed files rewritten (new inodes), drift repaired, RebootedNode True"
    ;;
*) fail "unexpected boot $MCD_BOOT (a second reboot: the force file was honoured twice?)" ;;
esac

# ROOTFS: backports
# --reboot-mode=auto on systemd 254 (bookworm-backports): a change no policy entry matches ends
# in a reboot, and a soft one (no kernel, initramfs, kernel argument or image change): the
# userspace restarts on the same kernel (same boot id, basic.target active anew), every service
# gets a new PID (the daemon's too), and the daemon validates the disk and reports Done, with
# the kind in lastReboot, RebootedNode and the record it removed.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
case "$MCD_BOOT" in
1)
    v=$(systemctl --version | awk 'NR==1 {print int($2)}')
    [ "$v" -ge 254 ] || fail "systemd $v: this scenario needs the backports image (254 or later)"
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_unit mcd-test.service true "$(test_unit 1)"
    mc_desire v1
    mcd_reboot_mode auto
    mcd_start
    wait_done "$MC_RENDERED" 10
    systemctl start mcd-test.service
    mc_reset
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_unit mcd-test.service true "$(test_unit 1)"
    mc_file /etc/mcd-test/unmatched.conf "no policy matches me"$'\n'
    running_pids > "$MCD_KEEP/pids"
    boot_id > "$MCD_KEEP/boot1"
    userspace_started > "$MCD_KEEP/userspace1"
    grep -q "^$MCD_UNIT " "$MCD_KEEP/pids" || fail "the daemon is not among the running services"
    date +%s.%N > "$MCD_KEEP/t0"
    mc_desire v2
    echo "$MC_RENDERED" > "$MCD_KEEP/v2"
    wait_status '.postConfigAction == "Rebooting"' 30 "postConfigAction Rebooting"
    assert_eq "Reboot" "$(plan_actions)" "plan actions"
    assert_eq soft "$(st .lastPlan.rebootKind.kind)" "the plan's reboot kind"
    report "boot 1: systemd $v, desired v2 -> Rebooting in ${WAITED} s: $(st .lastPlan.rebootKind.kind) ($(st .lastPlan.rebootKind.reason)); $(wc -l < "$MCD_KEEP/pids") services running"
    rebooting
    ;;
2)
    v2=$(cat "$MCD_KEEP/v2")
    wait_done "$v2" 60
    t=$(awk -v a="$(cat "$MCD_KEEP/t0")" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
    assert_eq "$(cat "$MCD_KEEP/boot1")" "$(boot_id)" "boot id (a soft reboot keeps the kernel)"
    [ "$(userspace_started)" != "$(cat "$MCD_KEEP/userspace1")" ] \
        || fail "basic.target's activation time unchanged: no soft reboot happened"
    assert_eq soft "$(st .lastReboot.kind)" "lastReboot.kind"
    assert_eq soft "$(st .lastReboot.asked)" "lastReboot.asked"
    assert_eq True "$(cond RebootedNode)" "RebootedNode"
    assert_eq "rebooted into $v2: soft reboot" \
        "$(jq -r '.conditions[] | select(.type == "RebootedNode") | .message' "$MCD_STATUS")" "RebootedNode message"
    assert_eq "applied $v2; soft-rebooted and validated" "$(st .lastOutcome)" "lastOutcome"
    assert_eq "no policy matches me" "$(cat /etc/mcd-test/unmatched.conf)" "the new file"
    [ ! -e "$MCD_STATE_DIR/reboot-pending" ] || fail "the reboot record is still there"
    # Every service that ran before runs under a new PID now (those that run again).
    same=() changed=0
    while read -r unit pid; do
        now=$(main_pid "$unit")
        [ "$now" = 0 ] && continue
        if [ "$now" = "$pid" ]; then same+=("$unit:$pid"); else changed=$((changed + 1)); fi
    done < "$MCD_KEEP/pids"
    [ ${#same[@]} = 0 ] || fail "services with the same PID after the soft reboot: ${same[*]}"
    for u in "$MCD_UNIT" mcd-test.service; do
        [ "$(main_pid "$u")" != 0 ] || fail "$u is not running after the soft reboot"
        [ "$(main_pid "$u")" != "$(awk -v u="$u" '$1 == u {print $2}' "$MCD_KEEP/pids")" ] \
            || fail "$u kept its PID"
    done
    assert_eq 1 "$(mcd_metric 'mcd_reboots_total{kind="soft"}')" "mcd_reboots_total{kind=soft}"
    report "boot 2: Done on $v2 ${t} s after the desired config was written; same boot id, new userspace; $changed services, the daemon among them, have new PIDs"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

# ROOTFS: backports
# Benchmark (not run by default): time from a desired config written to the daemon's Done on it
# after the reboot the change needs, soft (--reboot-mode=auto, systemd 254) and full
# (--reboot-mode=full), in turn, three of each. Soft: the guest's userspace restarts in the
# same container; full: the guest powers off and the harness boots the container again
# (nspawn exit 133), which is less than a machine's reboot (no firmware, boot loader, kernel or
# initrd: the QEMU tier would add those).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
ROUNDS=6
if [ "$MCD_BOOT" -gt 1 ]; then
    wait_done "$(cat "$MCD_KEEP/want")" 120
    kind=$(cat "$MCD_KEEP/kind")
    t=$(awk -v a="$(cat "$MCD_KEEP/t0")" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
    assert_eq "$kind" "$(st .lastReboot.kind)" "the kind of reboot that happened"
    echo "$kind $t" >> "$MCD_KEEP/times"
    report "round $((MCD_BOOT - 1)): $kind reboot, desired -> Done in $t s"
else
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_desire v1
    mcd_start
    wait_done "$MC_RENDERED" 10
fi
if [ "$MCD_BOOT" -gt "$ROUNDS" ]; then
    for k in soft full; do
        report "$k: $(awk -v k="$k" '$1 == k {printf "%s%s", s, $2; s=", "}' "$MCD_KEEP/times") s; median $(awk -v k="$k" '$1 == k {print $2}' "$MCD_KEEP/times" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s"
    done
    exit 0
fi
# Odd rounds soft, even rounds full.
if [ $((MCD_BOOT % 2)) = 1 ]; then kind=soft mode=auto; else kind=full mode=full; fi
mcd_reboot_mode "$mode"
mc_reset
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_file /etc/mcd-test/unmatched.conf "round $MCD_BOOT"$'\n'
echo "$kind" > "$MCD_KEEP/kind"
date +%s.%N > "$MCD_KEEP/t0"
mc_desire "v$((MCD_BOOT + 1))"
echo "$MC_RENDERED" > "$MCD_KEEP/want"
wait_status '.postConfigAction == "Rebooting"' 30 "postConfigAction Rebooting"
assert_eq "$kind" "$(st .lastPlan.rebootKind.kind)" "the plan's reboot kind"
rebooting

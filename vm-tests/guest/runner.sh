#!/bin/bash
# Runs inside the guest at every boot (mcd-vmtest.service): runs the scenario named in
# /mcd-results/scenario with MCD_BOOT set to this boot's number, records the outcome in
# /mcd-results/result, then powers off. A scenario that exits 100 has asked for a reboot: the
# runner leaves the machine to it and the harness boots the guest again on the same overlay.
# A reboot that starts while the scenario still runs (the daemon's own) waits for it: see
# mcd-vmtest.service's ExecStop.
R=/mcd-results
# The VM tier shares the repository's systemd/ at /mcd-unit (the container tier installs the
# daemon's unit from the host instead).
if [ -f /mcd-unit/machine-config-daemon.service ] \
    && ! cmp -s /mcd-unit/machine-config-daemon.service /etc/systemd/system/machine-config-daemon.service; then
    install -m 0644 /mcd-unit/machine-config-daemon.service /etc/systemd/system/
    systemctl daemon-reload
fi
# A soft reboot keeps /run: the end mark of the previous boot's run must not end this one's
# shutdown wait early.
rm -f /run/mcd-vmtest-done
state=/var/lib/mcd-vmtest
mkdir -p "$state"
boot=$(( $(cat "$state/boot" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/boot"
scenario=$(cat "$R/scenario")
export MCD_BOOT=$boot MCD_BIN=/mcd-bin MCD_RESULTS=$R MCD_SYSTEMD_TESTS=1 MCD_VMTEST=/mcd-vmtest
echo "=== $scenario, boot $boot" >> "$R/log"
bash "/mcd-vmtest/$scenario.sh" >> "$R/log" 2>&1
rc=$?
if [ "$rc" = 100 ]; then
    echo "=== boot $boot: scenario asked for a reboot" >> "$R/log"
    touch /run/mcd-vmtest-done
    exit 0
fi
if [ "$rc" = 0 ]; then
    echo pass > "$R/result"
else
    echo "fail: exit status $rc at boot $boot" > "$R/result"
fi
journalctl -b --no-pager -o short-monotonic > "$R/journal-boot$boot.txt" 2>&1 || true
touch /run/mcd-vmtest-done
systemctl --no-block poweroff

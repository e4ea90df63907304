# The packaged unit's sandbox, as systemd applies it: a child of the daemon can exec, write
# where the daemon and the OS tools write (/etc, /etc/kernel, /var, /run, /home/core/.ssh, /boot,
# /usr/lib/modules), read /proc/cmdline and reach systemd over D-Bus; it cannot write /usr,
# /proc/sys or the cgroup tree, mount, create namespaces or set the clock.
# The unit's command is replaced by guest/sandbox-probe.sh (a drop-in); every other
# setting is the packaged one. (In the container tier nspawn already mounts /proc/sys, /sys and
# the cgroup tree read-only for the whole guest, so those three probes hold there whatever the
# unit says; in the VM tier they check the unit's ProtectKernelTunables= and
# ProtectControlGroups=.)
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
# Where ReadWritePaths= must find something to open up (a package host has these).
mkdir -p /usr/lib/modules/mcd-probe /boot
mkdir -p "/etc/systemd/system/$MCD_UNIT.d"
cat > "/etc/systemd/system/$MCD_UNIT.d/50-probe.conf" <<'UNIT'
[Service]
Type=oneshot
RemainAfterExit=yes
Restart=no
WatchdogSec=0
ExecStart=
ExecStart=/bin/bash /mcd-vmtest/guest/sandbox-probe.sh
UNIT
systemctl daemon-reload
systemctl start "$MCD_UNIT" || fail "the probe did not run: $(journalctl -u "$MCD_UNIT" --no-pager | tail -5)"
probe=/run/machine-config-daemon/probe
cat "$probe"
assert_eq done "$(tail -1 "$probe")" "the probe ran to its end"
if grep '^FAIL' "$probe"; then
    fail "sandbox: $(grep '^FAIL' "$probe" | tr '\n' ';')"
fi
report "$(grep -c '^ok' "$probe") probes as expected: $(grep '^ok' "$probe" | awk '{print $2}' | tr '\n' ' ')"
report "$(systemd-analyze security "$MCD_UNIT" 2>/dev/null | tail -1 | sed 's/ *[^ ]*$//')"

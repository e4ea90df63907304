#!/bin/bash
# Runs as machine-config-daemon.service (the packaged unit with its sandbox; only the command
# and the service type are replaced by 33-daemon-sandbox's drop-in) and writes one line per
# probe to /run/machine-config-daemon/probe: `ok NAME` when the sandbox behaved as it must,
# `FAIL NAME: detail` otherwise. Every probe runs in a child process (fork + exec), as the OS
# tools will.
out=/run/machine-config-daemon/probe
: > "$out"
# allowed NAME COMMAND…: must succeed.
allowed() {
    local name=$1 err
    shift
    if err=$("$@" 2>&1); then echo "ok $name" >> "$out"; else echo "FAIL $name: $err" >> "$out"; fi
}
# refused NAME COMMAND…: must fail.
refused() {
    local name=$1 err
    shift
    if err=$("$@" 2>&1); then echo "FAIL $name: allowed" >> "$out"; else echo "ok $name (refused: $(echo "$err" | head -1))" >> "$out"; fi
}
# What the daemon and the OS tools it runs (rpm-ostree, grubby, kernel-install, dracut, depmod)
# must be able to do.
allowed exec-child /bin/sh -c 'exec /bin/true'
allowed write-etc sh -c 'mkdir -p /etc/kernel && echo probe > /etc/kernel/cmdline'
allowed write-etc-state sh -c 'mkdir -p /etc/machine-config-daemon && echo probe > /etc/machine-config-daemon/probe'
allowed write-var sh -c 'mkdir -p /var/lib/mcd-probe && echo probe > /var/lib/mcd-probe/x'
allowed write-run sh -c 'echo probe > /run/mcd-probe'
allowed write-home-core-ssh sh -c 'mkdir -p /home/core/.ssh/authorized_keys.d && echo probe > /home/core/.ssh/authorized_keys.d/probe'
allowed write-boot sh -c 'mkdir -p /boot/loader/entries && echo probe > /boot/loader/entries/probe.conf'
allowed write-usr-lib-modules sh -c 'echo probe > /usr/lib/modules/mcd-probe/modules.dep'
allowed read-proc-cmdline cat /proc/cmdline
allowed chown-chmod sh -c 'echo x > /etc/mcd-probe-owned && chown 1:1 /etc/mcd-probe-owned && chmod 0600 /etc/mcd-probe-owned'
allowed systemd-dbus busctl --system get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version
# What the sandbox takes away.
refused write-usr-bin sh -c 'echo probe > /usr/bin/mcd-probe'
refused write-proc-sys sh -c 'echo probe > /proc/sys/kernel/domainname'
refused write-cgroupfs mkdir /sys/fs/cgroup/mcd-probe
refused mount mount -t tmpfs none /mnt
refused unshare-mount unshare -m /bin/true
refused unshare-user unshare -U /bin/true
refused set-time date -s @0
echo done >> "$out"

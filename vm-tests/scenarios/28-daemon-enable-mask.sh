# Unit enablement through the daemon (policy None for the units, so no reboot by the daemon):
# `enabled: true` -> enabled (and it runs after the next boot), `enabled: false` -> disabled,
# `mask: true` -> masked (and it does not run).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
oneshot() {
    cat <<UNIT
[Unit]
Description=mcd vm-test $1

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/touch /run/mcd-test-$1-ran

[Install]
WantedBy=multi-user.target
UNIT
}
case "$MCD_BOOT" in
1)
    policy_set <<'YAML'
    units:
      - name: mcd-test-enable.service
        actions: [{type: None}]
      - name: mcd-test-disable.service
        actions: [{type: None}]
      - name: mcd-test-mask.service
        actions: [{type: None}]
YAML
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_unit mcd-test-disable.service true "$(oneshot disable)"
    mc_unit mcd-test-mask.service true "$(oneshot mask)"
    mc_desire v1
    mcd_start
    wait_done "$MC_RENDERED" 10
    assert_eq enabled "$(systemctl is-enabled mcd-test-disable.service)" "v1: mcd-test-disable"
    assert_eq enabled "$(systemctl is-enabled mcd-test-mask.service)" "v1: mcd-test-mask"
    boot=$(boot_id)

    mc_reset
    mc_file /etc/mcd-test/app.conf "version=1"$'\n'
    mc_unit mcd-test-enable.service true "$(oneshot enable)"
    mc_unit mcd-test-disable.service false "$(oneshot disable)"
    mc_masked mcd-test-mask.service
    mc_desire v2
    echo "$MC_RENDERED" > "$MCD_KEEP/v2"
    wait_done "$MC_RENDERED" 30
    report "boot 1: desired v2 -> Done in $WAITED s (plan: $(plan_actions))"
    assert_no_reboot "$boot"
    assert_eq enabled "$(systemctl is-enabled mcd-test-enable.service 2>&1)" "enabled: true"
    assert_eq disabled "$(systemctl is-enabled mcd-test-disable.service 2>&1)" "enabled: false"
    assert_eq masked "$(systemctl is-enabled mcd-test-mask.service 2>&1)" "mask: true"
    assert_eq /dev/null "$(readlink /etc/systemd/system/mcd-test-mask.service)" "mask symlink"
    report "boot 1: is-enabled: enable=enabled, disable=disabled, mask=masked"
    # systemd itself has re-read the units: the mask is in force now, not at the next boot.
    for u in enable disable mask; do
        assert_eq no "$(systemctl show -p NeedDaemonReload --value mcd-test-$u.service)" "NeedDaemonReload of mcd-test-$u"
    done
    assert_eq masked "$(systemctl show -p LoadState --value mcd-test-mask.service)" "LoadState of mcd-test-mask"
    ! systemctl start mcd-test-mask.service 2>/dev/null || fail "a masked unit started"
    [ ! -e /run/mcd-test-mask-ran ] || fail "mcd-test-mask.service ran while masked"
    report "boot 1: NeedDaemonReload=no for all three, mcd-test-mask LoadState=masked, refuses to start"
    systemctl --no-block reboot
    rebooting
    ;;
2)
    wait_done "$(cat "$MCD_KEEP/v2")" 10
    assert_eq active "$(systemctl is-active mcd-test-enable.service)" "mcd-test-enable after the boot"
    [ -e /run/mcd-test-enable-ran ] || fail "mcd-test-enable.service did not run at boot"
    [ ! -e /run/mcd-test-disable-ran ] || fail "mcd-test-disable.service ran at boot"
    [ ! -e /run/mcd-test-mask-ran ] || fail "mcd-test-mask.service ran at boot"
    assert_eq masked "$(systemctl is-enabled mcd-test-mask.service 2>&1)" "mask after the boot"
    report "boot 2: enable ran at boot, disable and mask did not; node Done"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

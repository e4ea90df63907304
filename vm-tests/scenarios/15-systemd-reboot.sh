# Reboot through the client: the container exits 133, the harness boots it again on the same
# overlay, and the second boot finds what the first one left (and a fresh /run).
. "$MCD_VMTEST/guest/lib.sh"
case "$MCD_BOOT" in
1)
    mkdir -p /var/lib/mcd-test
    echo "written before the reboot" > /var/lib/mcd-test/before-reboot
    touch /run/mcd-test-boot1
    client_test reboot_via_client
    rebooting
    ;;
2)
    assert_eq "written before the reboot" "$(cat /var/lib/mcd-test/before-reboot)" "marker from boot 1"
    [ ! -e /run/mcd-test-boot1 ] || fail "/run survived: not a new boot"
    assert_eq active "$(systemctl is-active dbus.service)" "system bus after reboot"
    report "reboot: second boot sees the marker of the first, /run is fresh"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

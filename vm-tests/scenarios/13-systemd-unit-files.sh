# enable / disable / mask / unmask / preset through the client: `systemctl is-enabled` agrees.
. "$MCD_VMTEST/guest/lib.sh"
client_test enable_disable_mask_unmask_preset
assert_eq enabled "$(systemctl is-enabled mcd-test-enable.service)" "is-enabled after preset"

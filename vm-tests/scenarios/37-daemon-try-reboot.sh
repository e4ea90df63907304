# Try mode across reboots: a change no policy matches reboots the node; the trial starts once the
# node is up again (the whole timeout from then), the health check fails, and the revert (the
# reverse change, which reboots too) takes the node back: after the third boot it is on the old
# config, Degraded with the check's output, and the rejected config is not applied.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
F=/etc/mcd-test/app.conf
case "$MCD_BOOT" in
1)
    mkdir -p /etc/machine-config-daemon/health.d
    printf 'tryMode:\n  confirmTimeout: 5s\n  checkInterval: 1s\n' > /etc/machine-config-daemon/config.yaml
    cat > /etc/machine-config-daemon/health.d/10-app <<'SH'
#!/bin/sh
grep -qx version=1 /etc/mcd-test/app.conf || { echo "app.conf says $(cat /etc/mcd-test/app.conf)"; exit 1; }
SH
    chmod +x /etc/machine-config-daemon/health.d/10-app
    mc_file $F "version=1"$'\n'
    mc_desire v1
    echo "$MC_RENDERED" > "$MCD_KEEP/v1"
    mcd_container_boot_id
    mcd_start
    wait_done "$MC_RENDERED" 30
    systemctl reset-failed
    mc_reset
    mc_file $F "version=2"$'\n'
    mc_desire v2
    echo "$MC_RENDERED" > "$MCD_KEEP/v2"
    wait_status '.postConfigAction == "Rebooting"' 30 "postConfigAction Rebooting"
    assert_eq AwaitingReboot "$(jq -r .phase "$MCD_STATE_DIR/try-pending")" "journal phase before the reboot"
    report "boot 1: desired v2 -> Rebooting ($(plan_actions)), $(st .reason)"
    rebooting
    ;;
2)
    v1=$(cat "$MCD_KEEP/v1") v2=$(cat "$MCD_KEEP/v2")
    wait_status ".currentConfig == \"$v2\" and (.reason | contains(\"pending confirmation\"))" 30 "$v2 pending confirmation after the boot"
    report "boot 2: on trial after the reboot: $(st .reason)"
    wait_status '.postConfigAction == "Rebooting"' 60 "the revert's reboot"
    assert_eq "version=1" "$(cat $F)" "$F written back before the revert's reboot"
    # Journaled once the revert's update has returned (just after it queued the reboot).
    for _ in $(seq 1500); do
        [ "$(jq -r .phase "$MCD_STATE_DIR/try-pending" 2>/dev/null)" = Rejected ] && break
        sleep 0.02
    done
    assert_eq Rejected "$(jq -r .phase "$MCD_STATE_DIR/try-pending")" "journal phase before the revert's reboot"
    report "boot 2: reverting, Rebooting after ${WAITED} s; $F version=1"
    rebooting
    ;;
3)
    v1=$(cat "$MCD_KEEP/v1") v2=$(cat "$MCD_KEEP/v2")
    wait_status '.state == "Degraded"' 30 "Degraded after the revert's reboot"
    reason=$(st .reason)
    case "$reason" in
        "try mode: $v2 reverted to $v1: health.d/10-app: exit status: 1: app.conf says version=2; not applied again until the desired config changes") ;;
        *) fail "reason: '$reason'" ;;
    esac
    assert_eq "$v1" "$(st .currentConfig)" "currentConfig"
    assert_eq "$v2" "$(st .desiredConfig)" "desiredConfig"
    assert_eq "version=1" "$(cat $F)" "$F"
    assert_eq True "$(cond RebootedNode)" "RebootedNode"
    case "$(st .lastOutcome)" in
        "reverted $v2 to $v1: "*) ;;
        *) fail "lastOutcome: '$(st .lastOutcome)'" ;;
    esac
    [ ! -e "$MCD_STATE_DIR/reboot-pending" ] || fail "the reboot record is still there"
    report "boot 3: Degraded on $v1: $reason"
    ;;
*) fail "unexpected boot $MCD_BOOT" ;;
esac

# Try mode on a real systemd: a health check `systemctl is-active mcd-test-foo.service`, and a
# config whose unit makes mcd-test-foo.service fail. The daemon reverts by itself within the
# confirmation timeout: the file back, the unit back (and restarted by the policy, active again),
# currentconfig the old config, the node Degraded with the failing check's output, the metric and
# the status say so, and the rejected config is not applied again.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
F=/etc/mcd-test/app.conf
U=mcd-test-foo.service
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: None
    units:
      - name: mcd-test-foo.service
        actions:
          - type: Restart
            restart:
              serviceName: mcd-test-foo.service
YAML
mkdir -p /etc/machine-config-daemon/health.d
cat > /etc/machine-config-daemon/config.yaml <<'YAML'
tryMode:
  confirmTimeout: 5s
  checkInterval: 1s
  checkTimeout: 10s
YAML
cat > /etc/machine-config-daemon/health.d/10-foo <<EOF2
#!/bin/sh
state=\$(systemctl is-active $U)
echo "$U: \$state"
test "\$state" = active && test -e /run/mcd-foo-ok
EOF2
chmod +x /etc/machine-config-daemon/health.d/10-foo
# v1: healthy. v2: its ExecStartPre drops the health mark (before the restart's job ends, so no
# check can see it) and its ExecStart fails.
GOOD='[Unit]
Description=mcd vm-test foo v1

[Service]
ExecStartPre=/bin/touch /run/mcd-foo-ok
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target'
BAD='[Unit]
Description=mcd vm-test foo v2

[Service]
ExecStartPre=/bin/rm -f /run/mcd-foo-ok
ExecStart=/bin/sh -c "echo foo v2 cannot start; exit 3"

[Install]
WantedBy=multi-user.target'
mc_file $F "version=1"$'\n'
mc_unit $U true "$GOOD"
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 30
systemctl start $U
# A container guest may start degraded (units it cannot run): the check is about this change.
systemctl reset-failed
report "system state before the update: $(systemctl is-system-running || true)"
pid=$(main_pid $U)

mc_reset
mc_file $F "version=2"$'\n'
mc_unit $U true "$BAD"
mc_desire v2
v2=$MC_RENDERED
wait_status '.state == "Working" and (.reason | contains("pending confirmation"))' 30 "pending confirmation of $v2"
report "desired v2 -> on trial: $(st .reason)"
wait_status '.state == "Degraded"' 60 "Degraded after the revert"
reason=$(st .reason)
report "reverted in $WAITED s: $reason"
case "$reason" in
    "try mode: $v2 reverted to $v1: "*"health.d/10-foo: exit status: 1: $U: "*"; not applied again until the desired config changes") ;;
    *) fail "reason: '$reason'" ;;
esac
assert_eq "version=1" "$(cat $F)" "$F back"
assert_eq "mcd vm-test foo v1" "$(systemctl show -p Description --value $U)" "the unit back (loaded)"
grep -q "ExecStartPre=/bin/touch /run/mcd-foo-ok" /etc/systemd/system/$U || fail "the unit file is not v1's"
assert_eq active "$(systemctl is-active $U)" "$U active again (restarted by the revert)"
[ "$(main_pid $U)" != "$pid" ] || fail "$U was not restarted"
assert_eq "$v1" "$(st .currentConfig)" "currentConfig"
assert_eq "$v2" "$(st .desiredConfig)" "desiredConfig"
assert_eq "$v1" "$(jq -r .metadata.name "$MCD_STATE_DIR/currentconfig")" "stored currentconfig"
assert_eq Rejected "$(jq -r .phase "$MCD_STATE_DIR/try-pending")" "the journal remembers the rejected config"
assert_eq 1 "$(mcd_metric mcd_try_reverts_total)" "mcd_try_reverts_total"
report "after the revert: $F version=1, $U v1 active (new pid), currentconfig $v1, $(st '.tryMode.lastChecks | join(" | ")')"

# The same desired config again: held back.
cp "$MCD_DESIRED/50-scenario.json" "$MCD_DESIRED/.50-scenario.json.tmp"
mv "$MCD_DESIRED/.50-scenario.json.tmp" "$MCD_DESIRED/50-scenario.json"
wait_journal "was reverted: not applying it again" 30
assert_eq "version=1" "$(cat $F)" "$F after the rejected config was desired again"
assert_eq Degraded "$(st .state)" "state"

# Back to v1 as the desired config: the rejected one is forgotten, Done.
mc_reset
mc_file $F "version=1"$'\n'
mc_unit $U true "$GOOD"
mc_desire v1
wait_done "$v1" 30
[ ! -e "$MCD_STATE_DIR/try-pending" ] || fail "the journal is left"
report "desired back to v1 -> Done in $WAITED s"

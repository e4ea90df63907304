# A desired config that does not parse: the node stays on its config, Degraded with the error as
# reason, nothing written, the daemon keeps running; a valid desired config then applies.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: None
YAML
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10
pid=$(mcd_pid)
printf 'apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata: {name: broken\n' \
    > "$MCD_DESIRED/.60-broken.yaml.tmp"
mv "$MCD_DESIRED/.60-broken.yaml.tmp" "$MCD_DESIRED/60-broken.yaml"
wait_status '.state == "Degraded"' 10 "Degraded on a broken desired config"
reason=$(st .reason)
case "$reason" in *60-broken.yaml*) ;; *) fail "reason does not name the broken file: $reason" ;; esac
report "broken desired config -> Degraded in $WAITED s: $(echo "$reason" | head -1)"
assert_eq "$v1" "$(st .currentConfig)" "currentConfig"
assert_eq "version=1" "$(cat /etc/mcd-test/app.conf)" "nothing written"
assert_eq "$pid" "$(mcd_pid)" "the daemon kept running"
assert_eq active "$(systemctl is-active "$MCD_UNIT")" "the daemon's unit"
rm "$MCD_DESIRED/60-broken.yaml"
mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_desire v2
wait_done "$MC_RENDERED" 10
assert_eq "version=2" "$(cat /etc/mcd-test/app.conf)" "file after the fix"
report "broken file removed, v2 desired -> Done in $WAITED s"

# A drift rule heals /etc/mcd-test/app.conf, and the policy's Reload for it fails (a unit with no
# ExecReload): the file is rewritten all the same, and the node is Degraded with the failure, and
# stays so once the daemon has looked at its own write (which matches the config).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
F=/etc/mcd-test/app.conf
O=/etc/mcd-test/other.conf
policy_set <<'YAML'
    files:
      - path: /etc/mcd-test
        actions:
          - type: Reload
            reload:
              serviceName: mcd-test-noreload.service
YAML
mkdir -p /etc/machine-config-daemon
cat > /etc/machine-config-daemon/config.yaml <<YAML
drift:
  rules:
    - paths: ["$F"]
      action: heal
    - paths: ["$O"]
      action: report
YAML
NORELOAD='[Unit]
Description=mcd vm-test service without ExecReload

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target'
mc_file $F "version=1"$'\n'
mc_file $O "other"$'\n'
mc_unit mcd-test-noreload.service true "$NORELOAD"
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10
systemctl start mcd-test-noreload.service

echo "tampered" >> $F
wait_status '.state == "Degraded"' 30 "Degraded after the failed reload of the heal"
report "drift of $F -> healed, reload failed, Degraded in $WAITED s: $(st .reason)"
want="content mismatch for file \"$F\"; healed, but reload mcd-test-noreload.service failed: "
case "$(st .reason)" in
    "$want"*ExecReload*) ;;
    *) fail "reason: want '$want…ExecReload…', got '$(st .reason)'" ;;
esac
assert_eq "version=1" "$(cat $F)" "the heal rewrote $F"
# Inotify events come in order: once the drift of other.conf is reported, the event of the
# heal's own write (before it) has been looked at too. The failure stays.
echo "edited" >> $O
wait_status '(.driftReported // []) | length == 1' 30 "the drift of $O reported"
assert_eq Degraded "$(st .state)" "state after the daemon looked at its own write"
case "$(st .reason)" in
    "$want"*) ;;
    *) fail "reason after the daemon looked at its own write: '$(st .reason)'" ;;
esac
report "still Degraded after its own write was checked: $(st .reason)"

# What an operator sees with `journalctl -u machine-config-daemon` (the issue: the daemon is
# diagnosed that way): each state transition names the state and the config; the structured
# fields let `journalctl -u machine-config-daemon CONFIG=<name>` select an update's lines; the
# update names the file it changed (and `PATH=<file>` selects that line); the unit's status
# line (sd-notify STATUS=) names the state and config.
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
mc_reset
mc_file /etc/mcd-test/app.conf "version=2"$'\n'
mc_desire v2
v2=$MC_RENDERED
wait_done "$v2" 10
assert_eq "Done $v2" "$(systemctl show -p StatusText --value "$MCD_UNIT")" "StatusText (sd-notify STATUS=)"
report "StatusText: $(systemctl show -p StatusText --value "$MCD_UNIT")"
journalctl --sync 2>/dev/null || true
n=$(journalctl -u "$MCD_UNIT" --no-pager -o cat CONFIG="$v2" | wc -l)
[ "$n" -gt 0 ] || fail "journalctl CONFIG=$v2 selects nothing"
report "journalctl -u $MCD_UNIT CONFIG=<v2> selects $n lines"
plain=$(journalctl -u "$MCD_UNIT" --no-pager -o cat)
echo "$plain"
echo "$plain" | grep "update started" | grep -q "$v2" \
    || fail "the 'update started' line does not name the config: $(echo "$plain" | grep -m1 'update started')"
echo "$plain" | grep -E '(^|[^a-z])state' | grep -q Done \
    || fail "no state line names the state: $(echo "$plain" | grep -m1 -E '^state')"
report "journal lines name the config and the state"
echo "$plain" | grep -qx "/etc/mcd-test/app.conf written for $v2" \
    || fail "no line names the changed file: $(echo "$plain" | grep -m1 'written for')"
assert_eq "/etc/mcd-test/app.conf written for $v2" \
    "$(journalctl -u "$MCD_UNIT" --no-pager -o cat PATH=/etc/mcd-test/app.conf CONFIG="$v2")" \
    "journalctl PATH=/etc/mcd-test/app.conf CONFIG=<v2>"
report "the update names the file it changed: /etc/mcd-test/app.conf written for <v2>"

# The ControllerConfig's CA bundles (standalone mode: --controller-config, through a drop-in)
# are written without drain or reboot, and the default node disruption policy restarts the
# trust store and CRI-O for the user CA bundle. Neither unit exists yet on this node: the
# restart fails, the file stays written, the status names the failure and when the actions run
# again, and the node stays Done. Once the units exist the actions run again by themselves (no
# new bundle) and succeed: the status clears the failure, and both units ran. Then again with
# the daemon restarted while the actions wait: the new process runs them from the status.
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
CC=/etc/machine-config-daemon/controller-config.yaml
USER_CA=/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt
KUBE_PEM='-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIUM+Gy6k86pR06VUnVCFsSZp0uFxgwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwObWNkLXZtLXRlc3QtY2EwIBcNMjYxMjAxMDgxMjExWhgPMjEy
NjExMDcwODEyMTFaMBkxFzAVBgNVBAMMDm1jZC12bS10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE2HUR2tKYZ96GUbOFwIZTg3qm2QQVasuJTUrTmxZO
Wl4hjWBqah9GbQ4lcS82pvuZ57SZyXbCwBGfkoTWmADHKqNTMFEwHQYDVR0OBBYE
FBUTdFBs0iXJlj+0+8CcOmhrvTb7MB8GA1UdIwQYMBaAFBUTdFBs0iXJlj+0+8Cc
OmhrvTb7MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgdFe7iHq5
q9ppZ33QtxoUfvrP1ayxynujB2A4N3GR+5cCICP7u/H22OK+LKvtc/s5oeFXA37b
3kkc4mvbrFRTHY4b
-----END CERTIFICATE-----'
USER_PEM='-----BEGIN CERTIFICATE-----
MIIBlDCCATmgAwIBAgIUb9sLTAkzXlD2xVymIEQvsAR06HkwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTbWNkLXZtLXRlc3QtdXNlci1jYTAgFw0yNjEyMDEwODEyMTFa
GA8yMTI2MTEwNzA4MTIxMVowHjEcMBoGA1UEAwwTbWNkLXZtLXRlc3QtdXNlci1j
YTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNF/5UuqHYrVkaZWFOKEaP7GbJuX
TBNcSqAFqu3rct2WAsHPM83gmujIrxlhB5wacAGxorSi/blTFm18jyt2SmOjUzBR
MB0GA1UdDgQWBBR8TUN3K0GrokfhxB0OR8ZJr0899TAfBgNVHSMEGDAWgBR8TUN3
K0GrokfhxB0OR8ZJr0899TAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kA
MEYCIQC508cOVI3D9dT5XQLCnehdsTWVVPxBk4GdtxAvh2lFnAIhAKGevWxC1xcu
hEmJ+JB2zsmfvGnhn2Iq9srBkLH94iuJ
-----END CERTIFICATE-----'
b64() { printf '%s\n' "$1" | base64 -w0; }
mkdir -p /etc/machine-config-daemon
cat > "$CC" <<YAML
apiVersion: machineconfiguration.openshift.io/v1
kind: ControllerConfig
metadata:
  name: machine-config-controller
spec:
  kubeAPIServerServingCAData: $(b64 "$KUBE_PEM")
  rootCAData: $(b64 "$KUBE_PEM")
  additionalTrustBundle: $(b64 "$USER_PEM")
YAML
mkdir -p "/etc/systemd/system/$MCD_UNIT.d"
printf '[Service]\nExecStart=\nExecStart=%s start --desired-config %s --policy %s --controller-config %s\n' \
    "$MCD" "$MCD_DESIRED" "$MCD_POLICY" "$CC" > "/etc/systemd/system/$MCD_UNIT.d/50-controller-config.conf"
systemctl daemon-reload
mc_file /etc/mcd-test/app.conf "version=1"$'\n'
mc_desire v1
mcd_start
wait_done "$MC_RENDERED" 10

wait_status '(.certificates.errors // []) | length > 0' 30 "the failed restart in the status"
report "CA files written, restart failed in ${WAITED} s: $(st '.certificates.errors[0]')"
assert_eq "$USER_PEM" "$(cat "$USER_CA")" "the user CA bundle is written all the same"
assert_eq "$KUBE_PEM" "$(cat /etc/kubernetes/kubelet-ca.crt)" "the kubelet CA bundle"
assert_eq Done "$(st .state)" "a failed CA action leaves the node state"
case "$(st '.certificates.errors[0]')" in
    "restart coreos-update-ca-trust.service: no such unit") ;;
    *) fail "errors: $(st '.certificates.errors')" ;;
esac
[ -n "$(st '.certificates.retryAt // empty')" ] || fail "no retryAt in the status: $(st .certificates)"
journalctl -u "$MCD_UNIT" --no-pager | grep -q "post action restart coreos-update-ca-trust.service for the CA files failed: .*; run again in 10 s" \
    || fail "the journal does not say the action runs again"

# The trust store and CRI-O appear (as a package install would bring them): each records its run.
for u in coreos-update-ca-trust crio; do
    printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c "date +%%s.%%N >> /run/mcd-test-%s.runs"\n' "$u" \
        > "/etc/systemd/system/$u.service"
done
systemctl daemon-reload
wait_status '((.certificates.errors // []) | length) == 0 and (.certificates.retryAt // "") == ""' 60 "the actions done on their own retry"
report "actions run again and done ${WAITED} s after the units appeared: $(st '.certificates.actions | join(", ")')"
assert_eq "restart coreos-update-ca-trust.service: done,restart crio.service: done" \
    "$(st '.certificates.actions | join(",")')" "the actions of the retry"
[ -s /run/mcd-test-coreos-update-ca-trust.runs ] || fail "the trust store did not run"
[ -s /run/mcd-test-crio.runs ] || fail "CRI-O was not restarted"
assert_eq Done "$(st .state)" "state after the retry"
assert_eq "$USER_PEM" "$(cat "$USER_CA")" "the user CA bundle after the retry"

# Again, and the daemon restarted while the actions wait: the new process runs them at once
# (the files already match, so without the status's pendingActions nothing would run them).
for u in coreos-update-ca-trust crio; do rm "/etc/systemd/system/$u.service"; done
systemctl daemon-reload
rm -f /run/mcd-test-*.runs
sed -i "s|^  additionalTrustBundle: .*|  additionalTrustBundle: $(b64 "$KUBE_PEM")|" "$CC"
wait_status '(.certificates.pendingActions // []) | length == 2' 30 "the failed restart pending again"
for u in coreos-update-ca-trust crio; do
    printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c "date +%%s.%%N >> /run/mcd-test-%s.runs"\n' "$u" \
        > "/etc/systemd/system/$u.service"
done
systemctl daemon-reload
old_pid=$(systemctl show -P MainPID "$MCD_UNIT")
systemctl restart "$MCD_UNIT"
new_pid=$(systemctl show -P MainPID "$MCD_UNIT")
[ "$new_pid" != "$old_pid" ] || fail "the daemon did not restart"
wait_status '((.certificates.pendingActions // []) | length) == 0 and ((.certificates.errors // []) | length) == 0' 30 "the pending actions run by the new process"
journalctl _PID="$new_pid" --no-pager -o cat | grep -q "CA post actions pending from before the start: they run now" \
    || fail "the new process did not take the pending actions: $(journalctl _PID="$new_pid" --no-pager -o cat | tail -20)"
[ -s /run/mcd-test-crio.runs ] || fail "CRI-O was not restarted by the new process"
report "restarted while pending: the new process ran them, ${WAITED} s: $(st '.certificates.actions | join(", ")')"
assert_eq "$KUBE_PEM" "$(cat "$USER_CA")" "the rotated user CA bundle"

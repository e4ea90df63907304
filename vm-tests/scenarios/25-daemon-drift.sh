# Drift: editing, chmod-ing or deleting a managed file makes the node Degraded with the exact
# reason (the daemon leaves the file alone); restoring it brings Done back; a touch (mtime only)
# is not drift. How long each took is reported, not judged (the daemon bench measures it).
. "$MCD_VMTEST/guest/lib.sh"
. "$MCD_VMTEST/guest/daemon.sh"
F=/etc/mcd-test/app.conf
mc_file $F "version=1"$'\n'
mc_file /etc/mcd-test/other.conf "other"$'\n'
mc_desire v1
v1=$MC_RENDERED
mcd_start
wait_done "$v1" 10

# wait_drift REASON WHAT: Degraded with exactly REASON (generous timeout; the time is reported).
wait_drift() {
    wait_status ".state == \"Degraded\" and .reason == $(jq -Rn --arg r "$1" '$r')" 30 "Degraded: $1"
    report "$2 -> Degraded in $WAITED s: $1"
}
restored() {
    wait_done "$v1" 30
    report "$1 -> Done in $WAITED s"
}

echo "tampered" >> $F
wait_drift "content mismatch for file \"$F\"" "append to $F"
# Degraded is where the daemon stops: it reports the drift and repairs nothing.
assert_eq "version=1"$'\n'"tampered" "$(cat $F)" "the daemon did not overwrite the drifted file"
printf 'version=1\n' > $F
restored "content restored"

chmod 0755 $F
wait_drift "mode mismatch for file: \"$F\"; expected: -rw-r--r--/420/0644; received: -rwxr-xr-x/493/0755" "chmod 0755 $F"
chmod 0644 $F
restored "mode restored"

# A rename over the file (what editors and sed -i do).
printf 'version=1 (edited)\n' > /etc/mcd-test/.app.conf.new
mv /etc/mcd-test/.app.conf.new $F
wait_drift "content mismatch for file \"$F\"" "rename over $F"
printf 'version=1\n' > /etc/mcd-test/.app.conf.new
mv /etc/mcd-test/.app.conf.new $F
restored "rename back"

rm /etc/mcd-test/other.conf
wait_status '.state == "Degraded"' 30 "Degraded after a delete"
reason=$(st .reason)
case "$reason" in *'"/etc/mcd-test/other.conf"'*) ;; *) fail "delete: reason does not name the file: $reason" ;; esac
report "rm other.conf -> Degraded in $WAITED s: $reason"
printf 'other\n' > /etc/mcd-test/other.conf
restored "other.conf recreated"

# A touch, then a real drift of the other file: $F comes first in event order and in path
# order, so had the touch counted as drift, the Degraded reason would name $F.
touch $F
chmod 0600 /etc/mcd-test/other.conf
wait_status '.state == "Degraded"' 30 "Degraded after the chmod that follows the touch"
reason=$(st .reason)
case "$reason" in *'"/etc/mcd-test/other.conf"'*) ;; *) fail "touch of $F counted as drift: $reason" ;; esac
report "touch: not drift (the next Degraded names other.conf: $reason)"
chmod 0644 /etc/mcd-test/other.conf
restored "other.conf mode restored"

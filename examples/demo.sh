#!/usr/bin/env bash
# Runs the daemon in standalone mode on a demo root (no systemd needed): builds it, makes a fresh
# /tmp/mcd-demo/root with the users the examples refer to, puts examples/configs/base.yaml as
# the desired config, and runs `machine-config-daemon start` in the foreground (Ctrl-C stops it).
# README's quick start shows what to try next from another terminal.
#
# Each run starts from scratch: the demo directory of an earlier run is removed first (only a
# directory this script made, and only while no demo daemon runs on it).
#
# Environment: CARGO_TARGET_DIR (where cargo builds, as for cargo itself), MCD_DEMO_DIR (the
# demo directory, default /tmp/mcd-demo), MCD_DEMO_BIN (a binary to run instead of building
# one), MCD_DEMO_METRICS (the metrics address, default 127.0.0.1:8797).
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${MCD_DEMO_DIR:-/tmp/mcd-demo}
bin=${MCD_DEMO_BIN:-${CARGO_TARGET_DIR:-target}/release/machine-config-daemon}
if [ -z "${MCD_DEMO_BIN:-}" ]; then
    cargo build --release --quiet
fi
if [ -e "$demo" ]; then
    # Made by this script: its marker, or (from before the marker) its desired config and root.
    if [ ! -e "$demo/.mcd-demo" ] && ! { [ -f "$demo/desired.yaml" ] && [ -d "$demo/root" ]; }; then
        echo "$demo exists and was not made by this script: not touching it (set MCD_DEMO_DIR)" >&2
        exit 2
    fi
    lock=$demo/root/etc/machine-config-daemon/lock
    if [ -e "$lock" ] && ! flock -n "$lock" true; then
        echo "a demo daemon still runs on $demo/root (pid $(cat "$lock")): stop it first" >&2
        exit 1
    fi
    rm -rf "$demo"
fi
mkdir -p "$demo/root/etc" "$demo/root/home/core"
touch "$demo/.mcd-demo"
printf 'root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS Admin:/home/core:/bin/bash\n' >"$demo/root/etc/passwd"
printf 'root:x:0:\ncore:x:1000:\n' >"$demo/root/etc/group"
cp examples/configs/base.yaml "$demo/desired.yaml"
echo "demo root: $demo/root   desired config: $demo/desired.yaml"
exec "$bin" start --root "$demo/root" \
    --desired-config "$demo/desired.yaml" --policy "$demo/policy.yaml" \
    --no-systemd --metrics-address "${MCD_DEMO_METRICS:-127.0.0.1:8797}" "$@"

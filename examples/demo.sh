#!/usr/bin/env bash
# Runs the daemon in standalone mode on a demo root (no systemd needed): builds it, makes
# /tmp/mcd-demo/root with the users the examples refer to, puts examples/configs/base.yaml as
# the desired config, and runs `machine-config-daemon start` in the foreground (Ctrl-C stops it).
# README's quick start shows what to try next from another terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${MCD_DEMO_DIR:-/tmp/mcd-demo}
cargo build --release --quiet
mkdir -p "$demo/root/etc" "$demo/root/home/core"
[ -f "$demo/root/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS Admin:/home/core:/bin/bash\n' >"$demo/root/etc/passwd"
[ -f "$demo/root/etc/group" ] || printf 'root:x:0:\ncore:x:1000:\n' >"$demo/root/etc/group"
[ -f "$demo/desired.yaml" ] || cp examples/configs/base.yaml "$demo/desired.yaml"
echo "demo root: $demo/root   desired config: $demo/desired.yaml"
exec target/release/machine-config-daemon start --root "$demo/root" \
    --desired-config "$demo/desired.yaml" --policy "$demo/policy.yaml" \
    --no-systemd --metrics-address 127.0.0.1:8797 "$@"

# The guest root filesystem: its recipe and its cached build (sourced by run.sh).
#
# The recipe is this file: the cache key is its hash, so editing anything below rebuilds the
# image on the next run and leaves it alone otherwise.

ROOTFS_SUITE=bookworm
# systemd as PID 1 and the system bus; jq for the daemon's status file; nothing else
# (scenarios bring their own units).
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,procps,jq

# Prints the path of a ready root filesystem, building it first when the recipe changed.
rootfs_path() {
    local key dir tmp mirror start
    key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
    dir="$MCD_VM_CACHE/rootfs-$ROOTFS_SUITE-$key"
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return 0
    fi
    ensure_cmd mmdebstrap mmdebstrap
    mirror=$(debian_mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
    mkdir -p "$MCD_VM_CACHE"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    log "building root filesystem $ROOTFS_SUITE ($ROOTFS_PACKAGES) into $dir"
    start=$(date +%s.%N)
    mmdebstrap --quiet --variant=minbase --include="$ROOTFS_PACKAGES" \
        --customize-hook='chroot "$1" passwd -d root >/dev/null' \
        --customize-hook='echo mcd-guest > "$1/etc/hostname"' \
        --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
        --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
        "$ROOTFS_SUITE" "$tmp" "$mirror" >&2 || { rm -rf "$tmp"; die "mmdebstrap failed"; }
    touch "$tmp/.complete"
    # Older recipes' images are dead weight.
    local old
    for old in "$MCD_VM_CACHE"/rootfs-*; do
        case "$old" in "$tmp") ;; *) rm -rf "$old" ;; esac
    done
    mv "$tmp" "$dir"
    log "root filesystem built in $(elapsed "$start") s ($(du -sh "$dir" | cut -f1))"
    echo "$dir"
}

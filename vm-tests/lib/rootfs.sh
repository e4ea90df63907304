# The guest root filesystems: their recipes and their cached builds (sourced by run.sh).
#
# The recipe is this file: the cache key is its hash, so editing anything below rebuilds the
# images on the next run and leaves them alone otherwise.
#
# Variants (a scenario names its own with a `# ROOTFS: <variant>` line; none: `stock`):
#   stock      Debian bookworm as released (systemd 252)
#   backports  the same with systemd (and its libraries and udev) from bookworm-backports
#              (systemd 254 or later: soft-reboot.target), from the host's Debian mirror

ROOTFS_SUITE=bookworm
# systemd as PID 1 and the system bus; jq for the daemon's status file; nothing else
# (scenarios bring their own units).
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,procps,jq
# The packages the backports variant takes from bookworm-backports (systemd's own binaries and
# the libraries that must be of the same version).
ROOTFS_BACKPORTS=systemd,systemd-sysv,libsystemd0,libsystemd-shared,libudev1,udev,libpam-systemd,libnss-systemd

# Prints the path of a ready root filesystem of variant $1 (default stock), building it first
# when the recipe changed.
rootfs_path() {
    local variant=${1:-stock} key dir tmp mirror start name
    case "$variant" in stock | backports) ;; *) die "unknown root filesystem variant '$variant'" ;; esac
    key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
    # The stock image keeps its historical name.
    name=rootfs-$ROOTFS_SUITE
    [ "$variant" = stock ] || name=$name-$variant
    dir="$MCD_VM_CACHE/$name-$key"
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return 0
    fi
    ensure_cmd mmdebstrap mmdebstrap
    mirror=$(debian_mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d}"
    mkdir -p "$MCD_VM_CACHE"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    local include=$ROOTFS_PACKAGES sources=("$mirror")
    if [ "$variant" = backports ]; then
        # pkg/release: apt takes these (and what they need of the same version) from backports.
        include="$include,$(echo "$ROOTFS_BACKPORTS" | sed "s#\\([^,]*\\)#\\1/$ROOTFS_SUITE-backports#g")"
        sources=("deb $mirror $ROOTFS_SUITE main" "deb $mirror $ROOTFS_SUITE-backports main")
    fi
    log "building root filesystem $variant ($include) into $dir"
    start=$(date +%s.%N)
    mmdebstrap --quiet --variant=minbase --include="$include" \
        --customize-hook='chroot "$1" passwd -d root >/dev/null' \
        --customize-hook='echo mcd-guest > "$1/etc/hostname"' \
        --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
        --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
        "$ROOTFS_SUITE" "$tmp" "${sources[@]}" >&2 || { rm -rf "$tmp"; die "mmdebstrap failed"; }
    touch "$tmp/.complete"
    # Older recipes' images of this variant are dead weight (<name>-<16 hex digits>: not the
    # other variants', nor a build in progress).
    local old
    for old in "$MCD_VM_CACHE/$name"-????????????????; do
        [ -d "$old" ] && rm -rf "$old"
    done
    mv "$tmp" "$dir"
    log "root filesystem $variant built in $(elapsed "$start") s ($(du -sh "$dir" | cut -f1))"
    echo "$dir"
}

# The VM tier's guest: the container tier's packages plus a kernel and a trimmed initramfs, as an
# ext4 disk image (qcow2) with the kernel and initramfs beside it (sourced by vm.sh).
#
# The recipe is this file plus rootfs.sh (the package list) and the runner unit baked into the
# image: the cache key is their hash.

. "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh"
VM_PACKAGES="$ROOTFS_PACKAGES,linux-image-amd64,initramfs-tools,udev"
VM_DISK_SIZE=2G

# qemu-system-x86 from bookworm-backports (bookworm's own conflicts with the installed backports
# qemu-utils). The suite is added to apt's sources at run time, with the mirror the host uses.
ensure_qemu() {
    command -v qemu-system-x86_64 > /dev/null && return 0
    local mirror
    mirror=$(debian_mirror) || die "no Debian mirror in the apt sources"
    local src=/etc/apt/sources.list.d/mcd-vm-tests-backports.sources
    if [ ! -f "$src" ]; then
        log "adding bookworm-backports to $src"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" > "$src"
    fi
    log "installing qemu-system-x86 from bookworm-backports"
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 > /dev/null || die "cannot install qemu-system-x86"
}

# Prints the directory holding disk.qcow2, vmlinuz and initrd.img of variant $1 (default stock;
# see rootfs.sh), building them when the recipe changed.
vmimage_path() {
    local variant=${1:-stock} key dir tmp mirror start name
    case "$variant" in stock | backports) ;; *) die "unknown VM image variant '$variant'" ;; esac
    key=$(cat "${BASH_SOURCE[0]}" "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh" \
        "$(dirname "${BASH_SOURCE[0]}")/../guest/mcd-vmtest.service" | sha256sum | cut -c1-16)
    name=vm-$ROOTFS_SUITE
    [ "$variant" = stock ] || name=$name-$variant
    dir="$MCD_VM_CACHE/$name-$key"
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return 0
    fi
    ensure_cmd mmdebstrap mmdebstrap mkfs.ext4 e2fsprogs
    mirror=$(debian_mirror) || die "no Debian mirror found in the apt sources"
    mkdir -p "$MCD_VM_CACHE"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local include=$VM_PACKAGES sources=("$mirror")
    if [ "$variant" = backports ]; then
        include="$include,$(echo "$ROOTFS_BACKPORTS" | sed "s#\\([^,]*\\)#\\1/$ROOTFS_SUITE-backports#g")"
        sources=("deb $mirror $ROOTFS_SUITE main" "deb $mirror $ROOTFS_SUITE-backports main")
    fi
    log "building VM image $variant ($include) into $dir"
    start=$(date +%s.%N)
    # The initramfs holds only what finds and mounts the root disk and the 9p shares.
    mmdebstrap --quiet --variant=minbase --include="$include" \
        --customize-hook='chroot "$1" passwd -d root >/dev/null' \
        --customize-hook='echo mcd-guest > "$1/etc/hostname"' \
        --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
        --customize-hook='printf "virtio_pci\nvirtio_blk\next4\n9p\n9pnet_virtio\n" > "$1/etc/initramfs-tools/modules"' \
        --customize-hook='sed -i "s/^MODULES=.*/MODULES=list/" "$1/etc/initramfs-tools/initramfs.conf"' \
        --customize-hook='chroot "$1" update-initramfs -u -k all >/dev/null' \
        --customize-hook='printf "/dev/vda / ext4 rw,noatime 0 1\nmcdbin /mcd-bin 9p trans=virtio,version=9p2000.L,ro,nofail 0 0\nmcdvmtest /mcd-vmtest 9p trans=virtio,version=9p2000.L,ro,nofail 0 0\nmcdresults /mcd-results 9p trans=virtio,version=9p2000.L,nofail 0 0\nmcdunit /mcd-unit 9p trans=virtio,version=9p2000.L,ro,nofail 0 0\n" > "$1/etc/fstab"' \
        --customize-hook='mkdir -p "$1/mcd-bin" "$1/mcd-vmtest" "$1/mcd-results" "$1/mcd-unit"' \
        --customize-hook='ln -sf /mcd-bin/machine-config-daemon "$1/usr/bin/machine-config-daemon"' \
        --customize-hook='systemctl --root="$1" mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service >/dev/null 2>&1 || true' \
        --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
        --customize-hook='cp -L "$1/vmlinuz" "$1/initrd.img" "'"$tmp"'/"' \
        "$ROOTFS_SUITE" "$tmp/root" "${sources[@]}" >&2 || { rm -rf "$tmp"; die "mmdebstrap failed"; }
    # The runner unit, enabled; the daemon's unit comes from the /mcd-unit share at each boot.
    install -m 0644 "$HERE/guest/mcd-vmtest.service" "$tmp/root/etc/systemd/system/mcd-vmtest.service"
    mkdir -p "$tmp/root/etc/systemd/system/multi-user.target.wants"
    ln -sf ../mcd-vmtest.service "$tmp/root/etc/systemd/system/multi-user.target.wants/mcd-vmtest.service"
    mkfs.ext4 -q -L mcdroot -d "$tmp/root" "$tmp/disk.raw" "$VM_DISK_SIZE" >&2 || die "mkfs.ext4 failed"
    qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2" >&2 || die "qemu-img convert failed"
    rm -rf "$tmp/root" "$tmp/disk.raw"
    touch "$tmp/.complete"
    # Older recipes' images of this variant (not the other variants', nor a build in progress).
    local old
    for old in "$MCD_VM_CACHE/$name"-????????????????; do
        [ -d "$old" ] && rm -rf "$old"
    done
    mv "$tmp" "$dir"
    log "VM image built in $(elapsed "$start") s ($(du -sh "$dir" | cut -f1))"
    echo "$dir"
}

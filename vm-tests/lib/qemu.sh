# The VM tier's QEMU command line (sourced by run.sh and power-cut.sh, after vmimage.sh).

# qemu_args DIR CMDLINE: sets QEMU_ARGS, the arguments of qemu-system-x86_64 for a guest on
# DIR/disk.qcow2 with the kernel command line CMDLINE, the serial console appended to
# DIR/console.log and the four 9p shares: the binaries (/mcd-bin), vm-tests/ (/mcd-vmtest),
# DIR/results (/mcd-results) and the repository's systemd/ (/mcd-unit). Needs VMIMAGE, BIN, HERE
# and REPO. The disk uses QEMU's default cache mode (writeback).
qemu_args() {
    local w=$1 accel=tcg
    [ "${MCD_VM_KVM:-0}" = 1 ] && accel=kvm
    QEMU_ARGS=(-accel "$accel" -cpu max -m 1024 -smp 1
        -nodefaults -no-reboot -display none
        -chardev "file,id=s0,path=$w/console.log,append=on" -serial chardev:s0
        -kernel "$VMIMAGE/vmlinuz" -initrd "$VMIMAGE/initrd.img"
        -append "$2"
        -drive "file=$w/disk.qcow2,if=virtio,format=qcow2"
        -virtfs "local,path=$BIN,mount_tag=mcdbin,security_model=none,readonly=on"
        -virtfs "local,path=$HERE,mount_tag=mcdvmtest,security_model=none,readonly=on"
        -virtfs "local,path=$w/results,mount_tag=mcdresults,security_model=none"
        -virtfs "local,path=$REPO/systemd,mount_tag=mcdunit,security_model=none,readonly=on")
}

# The kernel command line of a guest booted without one of its own.
QEMU_CMDLINE="root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0"

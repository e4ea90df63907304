#!/bin/bash
# Makes the two sources of packaging/machine-config-daemon.spec, for a build without network
# access (mock, Koji, COPR, an air-gapped rpmbuild):
#   machine-config-daemon-VERSION.tar.gz         the repository at HEAD (git archive)
#   machine-config-daemon-VERSION-vendor.tar.gz  every crate of Cargo.lock (cargo vendor --locked)
#                                                 under vendor/, and vendor/cargo-config.toml,
#                                                 the cargo configuration that points at them
# Usage: packaging/make-rpm-sources.sh [OUT_DIR]   (default: ~/rpmbuild/SOURCES)
# Then:  rpmbuild -ba packaging/machine-config-daemon.spec
# Run it again whenever Cargo.lock changes: the spec builds with --locked --offline, so a crate
# missing from the vendor tarball fails the build instead of being fetched.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$HOME/rpmbuild/SOURCES}
name=machine-config-daemon
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -1)
spec_version=$(sed -n 's/^Version: *//p' "$repo/packaging/$name.spec")
[ "$version" = "$spec_version" ] || {
    echo "Cargo.toml says $version, the spec $spec_version" >&2
    exit 1
}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$repo" archive --prefix="$name-$version/" -o "$out/$name-$version.tar.gz" HEAD
# Run from $tmp with a relative directory, so the configuration cargo prints says
# `directory = "vendor"`, relative to the source tree the spec unpacks it into.
(cd "$tmp" && cargo vendor --manifest-path "$repo/Cargo.toml" --locked --versioned-dirs vendor \
    > cargo-config.toml)
mv "$tmp/cargo-config.toml" "$tmp/vendor/cargo-config.toml"
tar -C "$tmp" -czf "$out/$name-$version-vendor.tar.gz" vendor
echo "$out/$name-$version.tar.gz"
echo "$out/$name-$version-vendor.tar.gz"

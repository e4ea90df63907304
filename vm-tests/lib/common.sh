# Shared helpers of the vm-tests harness (sourced, not executed).

# Cache of built images: outside the git tree, survives between runs on one machine.
MCD_VM_CACHE="${MCD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcd-vm-tests}"

log() { printf '%s vm-tests: %s\n' "$(date +%T)" "$*" >&2; }
# Seconds since START (a `date +%s.%N` value), two decimals.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

die() { log "error: $*"; exit 2; }

# Installs the Debian packages that provide the given commands when they are missing.
# Usage: ensure_cmd COMMAND PACKAGE [COMMAND PACKAGE]...
ensure_cmd() {
    local missing=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}"
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Prints the Debian mirror the host's apt uses (never hard-coded: read from the apt sources).
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822: the first stanza whose Suites has a plain suite (not -security) gives the URI.
        uri=$(awk 'BEGIN{RS=""; FS="\n"}
            { u=""; s="";
              for (i=1;i<=NF;i++) { if ($i ~ /^URIs:/) u=$i; if ($i ~ /^Suites:/) s=$i }
              if (u != "" && s != "" && s !~ /-security/) { sub(/^URIs:[ \t]*/, "", u); split(u, a, " "); print a[1]; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1=="deb" && $0 !~ /-security/ { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { print $i; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    return 1
}

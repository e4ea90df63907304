//! The OS half of a MachineConfig as values: kernel arguments, kernel types, extensions and the
//! OS image reference. Pure checks and conversions, shared by loading (every command refuses the
//! same bad values, naming the field), planning and the post-reboot validation.
//!
//! Decisions of ours:
//! - **Kernel arguments** are split the way the kernel reads its command line: on spaces, with
//!   double quotes keeping spaces inside one argument (`foo="a b"` is one argument). So the list
//!   entry `"a=1 b"` is the two arguments `a=1` and `b`. Control characters (NUL, newline, tab,
//!   DEL, …) and an unbalanced quote are refused: they cannot be written to a boot entry safely.
//! - **Extensions** must be one of the names of [`EXTENSIONS`]; anything else is refused at load
//!   time, so `validate`, `plan` and `apply` agree.
//! - **The OS image** must be a container image reference (`[registry[:port]/]name[:tag][@digest]`,
//!   the distribution reference grammar); a transport prefix such as `docker://` is not one.

/// A kernel type of `spec.kernelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum KernelType {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "realtime")]
    Realtime,
    #[serde(rename = "64k-pages")]
    Pages64k,
}

impl KernelType {
    /// The type a config asks for (`None`, empty and unknown mean default; loading refuses
    /// unknown names before this is reached).
    pub fn of(name: Option<&str>) -> KernelType {
        match name {
            Some("realtime") => KernelType::Realtime,
            Some("64k-pages") => KernelType::Pages64k,
            _ => KernelType::Default,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KernelType::Default => "default",
            KernelType::Realtime => "realtime",
            KernelType::Pages64k => "64k-pages",
        }
    }

    /// The type of a running kernel, from its release string (`uname -r`):
    /// `5.14.0-284.11.1.rt14.296.el9_2.x86_64` is realtime, `…aarch64+64k` is 64k-pages.
    pub fn of_release(release: &str) -> KernelType {
        let r = release.trim();
        if r.ends_with("+64k") {
            KernelType::Pages64k
        } else if r.ends_with("+rt")
            || r.contains("-rt-")
            || r.split('.').any(|part| part.starts_with("rt"))
        {
            KernelType::Realtime
        } else {
            KernelType::Default
        }
    }

    /// The packages this kernel type installs over the base kernel (empty for default).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            KernelType::Default => &[],
            KernelType::Realtime => &[
                "kernel-rt-core",
                "kernel-rt-modules",
                "kernel-rt-modules-extra",
            ],
            KernelType::Pages64k => &[
                "kernel-64k-core",
                "kernel-64k-modules",
                "kernel-64k-modules-core",
                "kernel-64k-modules-extra",
            ],
        }
    }
}

impl std::fmt::Display for KernelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base kernel packages a non-default kernel type replaces.
pub const BASE_KERNEL_PACKAGES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-modules",
    "kernel-modules-core",
    "kernel-modules-extra",
];

/// The supported extensions and the packages each installs (the upstream mapping).
pub const EXTENSIONS: &[(&str, &[&str])] = &[
    ("ipsec", &["NetworkManager-libreswan", "libreswan"]),
    ("kerberos", &["krb5-workstation", "libkadm5"]),
    ("kernel-devel", &["kernel-devel", "kernel-headers"]),
    ("sandboxed-containers", &["kata-containers"]),
    ("sysstat", &["sysstat"]),
    ("usbguard", &["usbguard"]),
    ("wasm", &["crun-wasm"]),
];

/// The packages of a supported extension.
pub fn extension_packages(name: &str) -> Option<&'static [&'static str]> {
    EXTENSIONS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The packages of a list of extensions, in order, each once (unknown names are skipped:
/// loading refuses them).
pub fn packages_of(extensions: &[String]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in extensions {
        for p in extension_packages(e).unwrap_or_default() {
            if !out.contains(p) {
                out.push(p);
            }
        }
    }
    out
}

/// Quotes at most 200 characters of `s` for a message.
pub fn quote(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        return format!("{s:?}");
    }
    let cut: String = s.chars().take(MAX).collect();
    format!("{cut:?}… ({} bytes in all)", s.len())
}

/// Checks one `spec.extensions` entry.
pub fn check_extension(name: &str) -> Result<(), String> {
    if extension_packages(name).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = EXTENSIONS.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "unknown extension {} (supported: {})",
        quote(name),
        known.join(", ")
    ))
}

/// Checks one `spec.kernelArguments` entry (which may hold several arguments).
pub fn check_kernel_argument(entry: &str) -> Result<(), String> {
    if let Some(c) = entry.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{} contains the control character {:?}; kernel arguments are printable text",
            quote(entry),
            c
        ));
    }
    split_kernel_arguments(entry).map(drop)
}

/// Splits a kernel command line (or one `kernelArguments` entry) into arguments: on spaces,
/// except inside double quotes. An unbalanced quote is an error.
pub fn split_kernel_arguments(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("{} has an unbalanced double quote", quote(line)));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Every argument of a `kernelArguments` list, in order (entries that do not split are left
/// out: loading refuses them).
pub fn kernel_arguments(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| split_kernel_arguments(e).unwrap_or_default())
        .collect()
}

/// The first argument of `expected` that `cmdline` lacks, read as multisets in order: each
/// expected argument must appear after the one matched before it; arguments others added are
/// allowed anywhere. `None` when all are there.
pub fn missing_argument<'a>(expected: &'a [String], cmdline: &[String]) -> Option<&'a str> {
    let mut at = 0;
    for e in expected {
        match cmdline[at..].iter().position(|c| c == e) {
            Some(i) => at += i + 1,
            None => return Some(e),
        }
    }
    None
}

/// Checks `spec.osImageURL` (empty means unset and is accepted).
pub fn check_image_reference(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "{} is not a container image reference: {why}",
            quote(s)
        ))
    };
    if s.len() > 4096 {
        return bad("longer than 4096 bytes");
    }
    if s.contains("://") {
        return bad("give the reference without a transport (no scheme://)");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return bad(&format!("the character {c:?} is not allowed"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad("the digest must be ALGORITHM:HEX");
        };
        let algo_ok = !algo.is_empty()
            && algo
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-_".contains(c));
        let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
        if !algo_ok || !hex_ok {
            return bad("the digest must be ALGORITHM:HEX (at least 32 hex digits)");
        }
        if algo == "sha256" && hex.len() != 64 {
            return bad("a sha256 digest has 64 hex digits");
        }
    }
    // The tag follows the last ':' after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return bad(
                "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            );
        }
    }
    if name.is_empty() {
        return bad("the name is empty");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first part with '.', ':' or "localhost" is the registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !host_ok {
            return bad(&format!("{} is not a registry host name", quote(h)));
        }
        if let Some(p) = port
            && (p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return bad(&format!("{} is not a port", quote(p)));
        }
    }
    for part in &parts {
        if !path_component_ok(part) {
            return bad(&format!(
                "the name part {} must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
                quote(part)
            ));
        }
    }
    Ok(())
}

fn path_component_ok(p: &str) -> bool {
    if p.is_empty() {
        return false;
    }
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', '__', or one or more '-'; never two separators of other kinds.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// The image a booted or staged deployment runs, without its transport
/// (`ostree-unverified-registry:`, `ostree-remote-image:REMOTE:docker://`, `docker://`, …).
pub fn strip_transport(reference: &str) -> &str {
    let mut r = reference;
    for prefix in [
        "ostree-unverified-registry:",
        "ostree-unverified-image:",
        "ostree-image-signed:",
        "ostree-remote-registry:",
    ] {
        if let Some(rest) = r.strip_prefix(prefix) {
            r = rest;
        }
    }
    if let Some(i) = r.find("docker://") {
        r = &r[i + "docker://".len()..];
    } else if let Some(rest) = r.strip_prefix("registry:") {
        r = rest;
    }
    r
}

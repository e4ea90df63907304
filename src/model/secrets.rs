//! Files of a MachineConfig that look like secrets.
//!
//! The machine config server gives every pool's rendered config to anyone who reaches its port
//! (it must: joining machines have no credentials yet), so nothing secret belongs in a
//! MachineConfig. [`secret_warnings`] names the files of a config that usually hold one; the
//! `validate --config` command prints them as warnings (the config is still valid: a cluster may
//! knowingly ship, say, its pull secret this way, as OpenShift does).
//!
//! A file is flagged when its path is one of [`SECRET_PATHS`], lies under one of
//! [`SECRET_DIRS`], or its name matches [`secret_name`] (kubeconfigs, ssh private keys,
//! `*.key`), or when its contents hold a PEM private key (`-----BEGIN … PRIVATE KEY-----`).

use super::MachineConfig;

/// Paths that usually hold a secret, and what they hold.
pub const SECRET_PATHS: &[(&str, &str)] = &[
    ("/var/lib/kubelet/config.json", "the cluster's pull secret"),
    ("/root/.docker/config.json", "registry credentials"),
    ("/etc/containers/auth.json", "registry credentials"),
    (
        "/etc/mco/internal-registry-pull-secret.json",
        "the internal registry's pull secret",
    ),
    ("/etc/kubernetes/kubeconfig", "a kubeconfig"),
    ("/var/lib/kubelet/kubeconfig", "the kubelet's kubeconfig"),
    ("/etc/kubernetes/kubelet.conf", "the kubelet's kubeconfig"),
    (
        "/etc/kubernetes/admin.conf",
        "the cluster administrator's kubeconfig",
    ),
    ("/root/.kube/config", "a kubeconfig"),
    ("/etc/shadow", "password hashes"),
    ("/etc/gshadow", "password hashes"),
];

/// Directories whose files usually are secrets.
pub const SECRET_DIRS: &[(&str, &str)] = &[
    ("/etc/pki/tls/private", "private keys"),
    ("/etc/ssl/private", "private keys"),
    (
        "/var/lib/kubelet/pki",
        "the kubelet's client and serving keys",
    ),
    ("/etc/kubernetes/pki", "cluster keys"),
];

/// What a file name says about its contents: kubeconfigs (`kubeconfig`, `*.kubeconfig`), ssh
/// private keys (`id_rsa`, `id_ecdsa`, `id_ed25519`, `id_dsa`, `ssh_host_*_key`), any `*.key`,
/// and a `.docker/config.json` or `containers/auth.json` anywhere.
pub fn secret_name(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or_default();
    if name == "kubeconfig" || name.ends_with(".kubeconfig") {
        return Some("a kubeconfig");
    }
    if ["id_rsa", "id_ecdsa", "id_ed25519", "id_dsa"].contains(&name)
        || (name.starts_with("ssh_host_") && name.ends_with("_key"))
    {
        return Some("an ssh private key");
    }
    if name.ends_with(".key") {
        return Some("a private key");
    }
    if path.ends_with("/.docker/config.json") || path.ends_with("/containers/auth.json") {
        return Some("registry credentials");
    }
    None
}

/// One warning per file of `mc` that looks like a secret, naming the field and the path.
pub fn secret_warnings(mc: &MachineConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in mc.spec.config.files.iter().enumerate() {
        let p = f.path.as_str();
        let what = SECRET_PATHS
            .iter()
            .find(|(s, _)| *s == p)
            .map(|(_, w)| *w)
            .or_else(|| {
                SECRET_DIRS
                    .iter()
                    .find(|(d, _)| p.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
                    .map(|(_, w)| *w)
            })
            .or_else(|| secret_name(p))
            .or_else(|| has_private_key(f.data()).then_some("a PEM private key"));
        if let Some(what) = what {
            out.push(format!(
                "spec.config.storage.files[{i}] ({p}): this file usually holds {what}; \
                 the machine config server gives every config to anyone who reaches it: \
                 keep secrets out of MachineConfigs"
            ));
        }
    }
    out
}

fn has_private_key(data: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const TAIL: &[u8] = b"PRIVATE KEY-----";
    data.windows(BEGIN.len())
        .enumerate()
        .filter(|(_, w)| *w == BEGIN)
        .any(|(i, _)| {
            let rest = &data[i + BEGIN.len()..];
            let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
            line.windows(TAIL.len()).any(|w| w == TAIL)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{File, MachineConfig};

    fn config(files: &[(&str, &str)]) -> MachineConfig {
        let mut mc = MachineConfig::default();
        mc.spec.config.files = files
            .iter()
            .map(|(p, c)| File {
                path: p.to_string(),
                contents: Some(c.as_bytes().to_vec()),
                ..File::default()
            })
            .collect();
        mc
    }

    #[test]
    fn secret_looking_files_are_named() {
        let cases = [
            ("/var/lib/kubelet/config.json", "", true),
            ("/root/.docker/config.json", "", true),
            ("/home/core/.docker/config.json", "", true),
            ("/etc/kubernetes/kubeconfig", "", true),
            ("/etc/foo/admin.kubeconfig", "", true),
            ("/home/core/.ssh/id_ed25519", "", true),
            ("/etc/ssh/ssh_host_rsa_key", "", true),
            ("/etc/ssh/ssh_host_rsa_key.pub", "", false),
            ("/etc/pki/tls/private/server.pem", "", true),
            ("/etc/pki/tls/privatefoo", "", false),
            ("/etc/app/tls.key", "", true),
            ("/etc/app/tls.crt", "-----BEGIN CERTIFICATE-----\n", false),
            (
                "/etc/app/bundle.pem",
                "x\n-----BEGIN EC PRIVATE KEY-----\n",
                true,
            ),
            ("/etc/chrony.conf", "server a.example", false),
        ];
        for (path, contents, flagged) in cases {
            let w = secret_warnings(&config(&[(path, contents)]));
            assert_eq!(w.len(), usize::from(flagged), "{path}: {w:?}");
        }
        let w = secret_warnings(&config(&[
            ("/etc/chrony.conf", ""),
            ("/var/lib/kubelet/config.json", "{}"),
        ]));
        assert_eq!(
            w,
            vec![
                "spec.config.storage.files[1] (/var/lib/kubelet/config.json): this file usually \
                 holds the cluster's pull secret; the machine config server gives every config \
                 to anyone who reaches it: keep secrets out of MachineConfigs"
            ]
        );
    }
}

//! Placeholder for the `/etc/containers/registries.conf` safety analysis (SPEC §3 point 7).
//! The real analysis is written on another branch with this exact API and replaces this file
//! at merge; until then every change is reported as unsafe (so `Special` drains).

/// Whether a registries.conf change can be applied without draining, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistriesVerdict {
    pub safe: bool,
    pub reasons: Vec<String>,
}

/// old/new: contents of /etc/containers/registries.conf (None = absent).
pub fn analyze(_old: Option<&[u8]>, _new: Option<&[u8]>) -> RegistriesVerdict {
    RegistriesVerdict {
        safe: false,
        reasons: vec!["registries.conf analysis not available".to_string()],
    }
}

//! Pure decisions: what changed between two configs, which actions the policy asks for, and
//! whether the change can be applied at all.
pub mod registries;

//! What users and the cluster write: MachineConfigs (normalised Ignition), the node disruption
//! policy, and rendering. Pure data and pure functions; the only I/O is [`load`] reading the files and
//! directories it is pointed at.

pub mod config;
pub mod document;
pub mod error;
pub mod ignition;
pub mod load;
pub mod os;
pub mod policy;
pub mod render;
pub mod secrets;
mod stream;

pub use config::*;
pub use error::{FieldError, LoadErrors, RenderError};
pub use ignition::{machine_config_to_json, to_ignition_json};
pub use load::{Loaded, load_config_arg, load_path, parse_machine_configs};

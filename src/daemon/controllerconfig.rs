//! Cluster mode's watch of the `ControllerConfig` named `machine-config-controller` (SPEC §12),
//! whose CA bundles the daemon writes on its node ([`super::certs`]).
//!
//! A [`NamedWatch`] keeping the object's spec: the daemon's event loop sleeps on its channel
//! beside the node watch and the inotify events, so the CA files are written between updates,
//! never during one (a change that comes during an update is taken once it has finished, the
//! latest spec only). A spec equal to the one already published (a relist, a status-only
//! change) wakes nobody.
//!
//! A cluster without the resource (404 on the list) and a deleted object are [`Seen::Missing`]:
//! the CA files on the node are left as they are.

use kube::api::Api;

use crate::cluster::controllerconfig::{
    CONTROLLER_CONFIG_NAME, ControllerConfig, ControllerConfigSpec,
};
use crate::cluster::named::{self, NamedWatch};
use crate::cluster::{Client, Options};

/// What the watch has seen of the object: its spec.
pub type Seen = named::Seen<Box<ControllerConfigSpec>>;

/// The watch; dropping it stops the watch. Its `rx` is the receiver the daemon sleeps on.
pub type ControllerConfigWatch = NamedWatch<Box<ControllerConfigSpec>>;

/// Starts the watch. Must be called inside a Tokio runtime.
pub fn watch(client: Client, opts: Options) -> ControllerConfigWatch {
    let api: Api<ControllerConfig> = Api::all(client);
    NamedWatch::new(
        api,
        CONTROLLER_CONFIG_NAME,
        &opts,
        &format!("ControllerConfig {CONTROLLER_CONFIG_NAME}"),
        |o: ControllerConfig| Some(Box::new(o.spec)),
    )
}

//! Cluster mode's watch of the `ControllerConfig` named `machine-config-controller` (SPEC §12),
//! whose CA bundles the daemon writes on its node ([`super::certs`]).
//!
//! One kube-runtime watcher (list and watch with the field selector
//! `metadata.name=machine-config-controller`, paced and relisted on 410 like the node's), whose
//! latest spec sits in a `watch` channel: the daemon's event loop sleeps on it beside the node
//! watch and the inotify events, so the CA files are written between updates, never during one
//! (a change that comes during an update is taken once it has finished, the latest spec only).
//! A spec equal to the one already published (a relist, a status-only change) wakes nobody.
//!
//! A cluster without the resource (404 on the list) and a deleted object are [`Seen::Missing`]:
//! the CA files on the node are left as they are.

use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::controllerconfig::{
    CONTROLLER_CONFIG_NAME, ControllerConfig, ControllerConfigSpec,
};
use crate::cluster::retry::{PacedWatch, is_code};
use crate::cluster::{Client, Options};

/// What the watch has seen of the object.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Not listed yet.
    Pending,
    /// No such object (or the resource is not served).
    Missing,
    /// The object's spec.
    Present(Box<ControllerConfigSpec>),
}

/// The watch; dropping it stops the watch.
pub struct ControllerConfigWatch {
    /// The receiver the daemon sleeps on (it has seen `Pending`, so the first listing wakes it).
    pub rx: watch::Receiver<Seen>,
    task: JoinHandle<()>,
}

impl Drop for ControllerConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControllerConfigWatch {
    /// Starts the watch. Must be called inside a Tokio runtime.
    pub fn new(client: Client, opts: Options) -> Self {
        let api: Api<ControllerConfig> = Api::all(client);
        let (tx, rx) = watch::channel(Seen::Pending);
        let task = tokio::spawn(run(api, tx, opts));
        ControllerConfigWatch { rx, task }
    }
}

async fn run(api: Api<ControllerConfig>, tx: watch::Sender<Seen>, opts: Options) {
    let config =
        watcher::Config::default().fields(&format!("metadata.name={CONTROLLER_CONFIG_NAME}"));
    let what = format!("ControllerConfig {CONTROLLER_CONFIG_NAME}");
    let mut stream = PacedWatch::new(api, config, &opts, &what);
    let mut listing: Option<ControllerConfig> = None;
    while let Some(event) = stream.next().await {
        let seen = match event {
            Ok(watcher::Event::Init) => {
                listing = None;
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listing = Some(o);
                continue;
            }
            Ok(watcher::Event::InitDone) => listing.take(),
            Ok(watcher::Event::Apply(o)) => Some(o),
            Ok(watcher::Event::Delete(_)) => None,
            Err(watcher::Error::InitialListFailed(e)) if is_code(&e, 404) => {
                tracing::debug!("controllerconfigs not served: no CA bundles to write");
                tx.send_if_modified(|cur| replace(cur, Seen::Missing));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ControllerConfig watch error; retrying with backoff");
                continue;
            }
        };
        let seen = match seen {
            Some(o) => Seen::Present(Box::new(o.spec)),
            None => Seen::Missing,
        };
        tx.send_if_modified(|cur| replace(cur, seen));
    }
}

fn replace(cur: &mut Seen, new: Seen) -> bool {
    if *cur == new {
        false
    } else {
        *cur = new;
        true
    }
}

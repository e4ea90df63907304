//! A watch of one object by name (list and watch with the field selector `metadata.name=…`,
//! paced and relisted on 410 by [`PacedWatch`]) whose latest state sits in a `watch` channel.
//!
//! Used for the singletons the daemon and the controller follow: the node disruption policy's
//! `MachineConfiguration/cluster` ([`crate::cluster::policy`]), and the `ControllerConfig`
//! `machine-config-controller` (the daemon's CA files, [`crate::daemon::controllerconfig`]; the
//! controller's certificate status, [`crate::controller::certificates`]).
//!
//! The channel starts at [`Seen::Pending`] and changes only when what is seen changes: a relist
//! that lists the same object, or an event whose mapped value is equal to the last one (a
//! status-only change when only the spec is kept), wakes nobody. A relist is published once it
//! is complete (`InitDone`), never half-way. A cluster that does not serve the resource (404 on
//! the list) and a deleted object are [`Seen::Missing`]. Other errors are logged and the watch
//! retries with backoff; the channel keeps the last state meanwhile. When the watch ends (the
//! task is aborted by dropping the [`NamedWatch`]), the sender goes and receivers see the
//! channel closed.

use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Options;
use super::retry::{PacedWatch, is_code};

/// What the watch has seen of the object.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<T> {
    /// Not listed yet.
    Pending,
    /// No such object (or the resource is not served).
    Missing,
    /// The object, as the watch's mapping keeps it.
    Present(T),
}

/// A whole object as a watch keeps it when every change matters (spec or status): one version
/// is equal to itself only (uid and `resourceVersion`), so a relist that lists the same version
/// wakes nobody while any write to the object does. An object without a version is new every
/// time.
#[derive(Debug, Clone)]
pub struct ByVersion<K>(pub K);

impl<K: kube::Resource> PartialEq for ByVersion<K> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.meta(), other.0.meta());
        a.resource_version.is_some() && a.uid == b.uid && a.resource_version == b.resource_version
    }
}

/// The watch; dropping it stops the watch.
pub struct NamedWatch<T> {
    /// The receiver to sleep on (it has seen `Pending`, so the first listing wakes it).
    pub rx: watch::Receiver<Seen<T>>,
    task: JoinHandle<()>,
}

impl<T> Drop for NamedWatch<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> NamedWatch<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    /// Starts watching the object `name` of `api`, publishing `keep(object)`; `keep` returns None
    /// for an object that cannot be kept (it logs why), which leaves the channel as it was.
    /// `what` names the object in logs. Must be called inside a Tokio runtime.
    pub fn new<K>(
        api: Api<K>,
        name: &str,
        opts: &Options,
        what: &str,
        keep: impl Fn(K) -> Option<T> + Send + 'static,
    ) -> Self
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let (tx, rx) = watch::channel(Seen::Pending);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = PacedWatch::new(api, config, opts, what);
        let task = tokio::spawn(run(stream, tx, what.to_string(), keep));
        NamedWatch { rx, task }
    }
}

async fn run<K, T>(
    mut stream: PacedWatch<K>,
    tx: watch::Sender<Seen<T>>,
    what: String,
    keep: impl Fn(K) -> Option<T>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: PartialEq,
{
    let mut listing: Option<K> = None;
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
                tracing::debug!(watch = %what, "resource not served (404 on the list): missing");
                tx.send_if_modified(|cur| replace(cur, Seen::Missing));
                continue;
            }
            Err(e) => {
                tracing::warn!(watch = %what, error = %e, "watch error; retrying with backoff");
                continue;
            }
        };
        let seen = match seen {
            Some(o) => match keep(o) {
                Some(v) => Seen::Present(v),
                None => continue,
            },
            None => Seen::Missing,
        };
        tx.send_if_modified(|cur| replace(cur, seen));
    }
}

/// Stores `new` unless it equals what is there; whether it did (whether to wake receivers).
fn replace<T: PartialEq>(cur: &mut Seen<T>, new: Seen<T>) -> bool {
    if *cur == new {
        false
    } else {
        *cur = new;
        true
    }
}

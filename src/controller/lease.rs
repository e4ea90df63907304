//! Leader election on a `coordination.k8s.io/v1` Lease, so two controller replicas are safe:
//! only the holder reconciles.
//!
//! The algorithm is client-go's `leaderelection`:
//! - A candidate reads the Lease every [`LeaseTimings::retry`]. It takes the Lease when it does
//!   not exist (create), when it holds no one, or when its holder has not renewed it for
//!   [`LeaseTimings::duration`] **as observed locally** (the time since this candidate last saw
//!   the Lease's `resourceVersion` change, never the holder's clock): an update carrying the
//!   observed `resourceVersion`, so of two candidates only one wins (the other gets a 409).
//! - The holder renews (`renewTime`) every [`LeaseTimings::retry`]; if it cannot renew for
//!   [`LeaseTimings::renew_deadline`] it has lost the Lease and must stop at once
//!   ([`Leader::lost`]); the process exits and the Deployment restarts it as a candidate.
//! - On a clean shutdown the holder gives the Lease up (empty `holderIdentity`) so a standby
//!   takes over without waiting the lease duration.
//!
//! Defaults (client-go's): duration 15 s, renew deadline 10 s, retry 2 s. A standby reads the
//! Lease every 2 s (the only periodic request of the controller, and only of standbys).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::cluster::Client;

use super::ControllerError;

/// The namespace of the Lease (the controller's own).
pub const NAMESPACE: &str = "machine-config-daemon";
/// The Lease's name.
pub const LEASE_NAME: &str = "machine-config-controller";

/// Lease timings.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// A held Lease: renewed in the background until dropped or lost.
pub struct Leader {
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    identity: String,
}

impl Leader {
    /// Resolves when the Lease is lost (could not renew within the renew deadline).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }

    /// Stops renewing and gives the Lease up, if still held.
    pub async fn release(self) {
        self.task.abort();
        if let Ok(mut lease) = self.api.get(LEASE_NAME).await
            && holder(&lease) == Some(self.identity.as_str())
        {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await;
            tracing::info!(identity = self.identity, "leader lease released");
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Waits until `identity` holds the Lease `namespace`/[`LEASE_NAME`], then renews it in the
/// background (see the module doc).
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: &str,
    t: LeaseTimings,
) -> Result<Leader, ControllerError> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let mut observed: Option<(String, Instant)> = None;
    loop {
        match try_take(&api, identity, t, &mut observed).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read or take the lease"),
        }
        tokio::time::sleep(t.retry).await;
    }
    tracing::info!(identity, namespace, lease = LEASE_NAME, "became leader");
    let (tx, rx) = watch::channel(false);
    let renew_api = api.clone();
    let me = identity.to_string();
    let task = tokio::spawn(async move {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(t.retry).await;
            match renew(&renew_api, &me, t).await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    tracing::error!(identity = me, "leader lease taken by another holder");
                    let _ = tx.send(true);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "leader lease renewal failed"),
            }
            if last_renew.elapsed() >= t.renew_deadline {
                tracing::error!(
                    identity = me,
                    "leader lease not renewed within the deadline"
                );
                let _ = tx.send(true);
                return;
            }
        }
    });
    Ok(Leader {
        lost: rx,
        task,
        api,
        identity: identity.to_string(),
    })
}

/// One attempt: true when `identity` now holds the Lease.
async fn try_take(
    api: &Api<Lease>,
    identity: &str,
    t: LeaseTimings,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool, kube::Error> {
    let spec = |transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(t.duration.as_secs() as i32),
        acquire_time: Some(now()),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                ..Default::default()
            },
            spec: Some(spec(0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    if holder(&lease) == Some(identity) {
        return Ok(true);
    }
    let expired = match (holder(&lease), observed.as_ref()) {
        (None, _) => true,
        (Some(_), Some((seen, at))) if *seen == rv => at.elapsed() >= t.duration,
        (Some(_), _) => {
            *observed = Some((rv.clone(), Instant::now()));
            false
        }
    };
    if !expired {
        return Ok(false);
    }
    let transitions = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0);
    lease.spec = Some(spec(transitions + 1));
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// One renewal: false when another holder has the Lease.
async fn renew(api: &Api<Lease>, identity: &str, t: LeaseTimings) -> Result<bool, kube::Error> {
    let mut lease = api.get(LEASE_NAME).await?;
    if holder(&lease) != Some(identity) {
        return Ok(false);
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(t.duration.as_secs() as i32);
    api.replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}

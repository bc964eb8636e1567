//! A worker's leases, on a connection of their own: the heartbeat that renews the
//! attempts it runs (and records that the worker is at work), and the reaper that
//! returns expired leases to ready. Apart from the claiming loop, so that a long read
//! or a slow claim never lets the worker's leases lapse.

use std::time::Duration;

use tokio::sync::watch;

use super::Cluster;
use super::protocol;
use super::worker::InFlight;

/// Renews the leases of the attempts in `in_flight` every third of `lease`, and
/// reaps expired ones every half, until `stop` turns true; reconnects when the
/// database went away.
pub(super) async fn keep(
    cluster: Cluster,
    owner: String,
    fingerprints: Vec<String>,
    lease: Duration,
    in_flight: InFlight,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut heartbeat = tokio::time::interval(lease / 3);
    let mut reap = tokio::time::interval(lease / 2);
    loop {
        let beat = tokio::select! {
            _ = heartbeat.tick() => true,
            _ = reap.tick() => false,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            client = cluster.client().await.ok();
        }
        let Some(connected) = &client else {
            tracing::warn!("cannot reach the cluster to renew leases; retrying");
            continue;
        };
        if beat {
            let held: Vec<protocol::Held> =
                super::execute::lock(&in_flight).iter().cloned().collect();
            let renewed = async {
                protocol::heartbeat(connected, &owner, lease, &held).await?;
                protocol::present(connected, &owner, &fingerprints, lease).await
            };
            if let Err(error) = renewed.await {
                tracing::warn!(error = %super::explain(&error), "heartbeat failed");
            }
        } else if let Err(error) = protocol::reap(connected).await {
            tracing::warn!(error = %super::explain(&error), "reaping expired leases failed");
        }
    }
}

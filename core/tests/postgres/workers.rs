//! Workers in the test's own process, for the distributed tests.

use aqueduct::dist::{Cluster, Worker, WorkerStats};

/// `count` workers of `cluster` made by `serve` (the workflows they serve, their
/// slots and lease), each working until `stop` holds `true`.
pub(crate) fn workers(
    cluster: &Cluster,
    serve: impl Fn(Worker) -> Worker,
    count: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<WorkerStats>> {
    (0..count)
        .map(|_| {
            let worker = serve(Worker::new(cluster.clone()));
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                worker.run(stopped).await.unwrap()
            })
        })
        .collect()
}

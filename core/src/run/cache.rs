//! The cache of a run (`#[task(cache)]`): where its cached tasks look results up and
//! save them, and the warnings that end in its report.

use std::sync::Arc;

use crate::exec::{CacheRun, CacheWarnings, Flushed, Sink};
use crate::plan::Plan;
use crate::report::RunReport;
use crate::store::Store;

/// A run's cache being used: handed to the executor, then finished.
pub(super) struct Cache {
    warnings: Arc<CacheWarnings>,
    /// The writer of a cache that is not the run's own store, to wait for.
    flushed: Option<Flushed>,
}

impl Cache {
    /// A cache in `store`, with a writer of its own (an in-memory run's, or a durable
    /// run's whose cache is another store), for a run of `plan` named `run` in the
    /// results it saves. `None` if the plan has no cached task or the writer cannot
    /// start (a warning: its cached tasks then run).
    pub(super) fn own(
        plan: &Plan,
        store: Option<Arc<dyn Store>>,
        run: String,
    ) -> (Option<CacheRun>, Option<Self>) {
        let Some(store) = store.filter(|_| plan.caches_any) else {
            return (None, None);
        };
        let warnings = Arc::new(CacheWarnings::default());
        match Sink::start_cache(Arc::clone(&store), Arc::clone(&warnings)) {
            Ok((sink, flushed)) => (
                Some(CacheRun::new(store, run, sink, Arc::clone(&warnings))),
                Some(Self {
                    warnings,
                    flushed: Some(flushed),
                }),
            ),
            Err(error) => {
                tracing::warn!(%error, "no cache for this run: its cached tasks run");
                (None, None)
            }
        }
    }

    /// A durable run's cache in its own store, through its checkpoint writer.
    pub(super) fn shared(
        plan: &Plan,
        store: &Arc<dyn Store>,
        run: &str,
        sink: &Sink,
        warnings: Arc<CacheWarnings>,
    ) -> (Option<CacheRun>, Option<Self>) {
        if !plan.caches_any {
            return (None, None);
        }
        let cache = CacheRun::new(
            Arc::clone(store),
            run.to_owned(),
            sink.clone(),
            Arc::clone(&warnings),
        );
        let flushed = None;
        (Some(cache), Some(Self { warnings, flushed }))
    }

    /// Waits for the cache's own writer, and puts what went wrong in `report`.
    pub(super) async fn finish(self, report: &mut RunReport) {
        if let Some(flushed) = self.flushed
            && flushed.await.is_err()
        {
            self.warnings
                .push("the cache's writer died: some results may not be saved".to_owned());
        }
        report.warnings.extend(self.warnings.take());
    }
}

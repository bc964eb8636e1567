//! The value of an `if` or `match`: when its decision and the taken arm's node are
//! resolved, the branch node takes that node's value (shared in place, or moved into
//! `Some`), or ends as that node did if it has no value. Nothing runs on a pool.

use super::resolve::unreached_status;
use super::*;
use crate::plan::BranchDef;

impl Shared {
    /// Resolves branch `job` (its decision and arms are resolved); returns a ready
    /// successor for this thread.
    pub(super) fn take_branch(
        self: &Arc<Self>,
        job: Job,
        def: &BranchDef,
        spill: &mut Vec<Job>,
    ) -> Option<Job> {
        let slots = self.board.slots();
        let arm = self
            .board
            .record(def.decision as usize)
            .and_then(crate::value::arm_of);
        let Some(arm) = arm else {
            // Its decision is required, so it succeeded: anything else is a fault.
            let error = TaskError::msg("the branch's decision has no arm");
            return self.resolve(
                job,
                None,
                Err(error),
                Caller::Rayon(spill),
                ItemRuns::default(),
            );
        };
        // Taking a moved value is the library's code, but a panic must stay the node's.
        match catch_unwind(AssertUnwindSafe(|| def.value(slots.into(), arm))) {
            Ok(Ok(value)) => self.resolve(
                job,
                None,
                Ok(value),
                Caller::Rayon(spill),
                ItemRuns::default(),
            ),
            Ok(Err(input)) => {
                let status = unreached_status(std::iter::once(self.board.record(input)));
                self.unrun(job, None, ItemRuns::default(), status);
                None
            }
            Err(panic) => {
                let error = TaskError::panicked(&*panic);
                self.resolve(
                    job,
                    None,
                    Err(error),
                    Caller::Rayon(spill),
                    ItemRuns::default(),
                )
            }
        }
    }
}

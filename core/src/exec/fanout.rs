//! Nested runs: a fan-out's items and sub-workflows, each a run of a body plan whose
//! parameters import values of the parent run by reference.

use super::*;
use std::sync::{Mutex, PoisonError};

use super::dispatch::Streak;
use crate::contain::{drop_all, drop_record};
use crate::plan::Items;
use crate::value::{Import, SlotView, Slots, fill};

thread_local! {
    /// How deep capped fan-outs' next items are started inside one another here.
    static ITEM_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Hands the CPU roots of new item runs to rayon together.
pub(super) fn spawn_roots(mut roots: Vec<(Arc<Shared>, Job)>) {
    match roots.len() {
        0 => {}
        1 => {
            let (run, job) = roots.pop().expect("one root");
            run.dispatch(job);
        }
        _ => rayon::spawn(move || {
            let context = Arc::clone(&roots[0].0.run);
            guard(&context, "the scheduler", || {
                // One streak per split: the items share their run's stop signal.
                roots
                    .into_par_iter()
                    .for_each_init(Streak::default, |streak, (run, job)| {
                        run.run_on_rayon_in(job, streak);
                    });
            });
        }),
    }
}

impl FanOut {
    pub(super) fn def(&self) -> &FanOutDef {
        match &self.parent.plan.calls[self.node] {
            Call::FanOut(def) => def,
            _ => unreachable!("a fan-out's node is a fan-out"),
        }
    }

    /// Drops what an ended item no longer needs (see [`forget_values`]).
    pub(super) fn forget_values(&self, slots: &mut [Slot]) {
        forget_values(self.def(), slots);
    }

    /// Starts item `index`: a run of the body with the item and the imports as its
    /// parameters. Its CPU roots go to `cpu_root`, its IO roots are dispatched.
    pub(super) fn start_item(
        self: &Arc<Self>,
        index: usize,
        def: &FanOutDef,
        cpu_root: &mut dyn FnMut(Arc<Shared>, Job),
    ) {
        let parent = &self.parent;
        let completion = Completion::Item {
            fan: Arc::clone(self),
            index,
        };
        let path = parent.nested_path(self.node, def, index);
        let mut child = parent.child(&def.body, completion, index, path);
        let mut params = child.board.slots().iter();
        let item: Option<Value> = match (def.collection, def.items) {
            (Some(collection), Items::Borrowed { item, .. }) => Some(Box::new(Import::Item {
                run: Arc::clone(parent) as Arc<dyn Slots>,
                collection,
                index,
                item,
            })),
            // The item, moved out of the collection: its body's to borrow or to take.
            (Some(_), Items::Owned(_)) => self
                .owned
                .take(index)
                .map(|value| def.body.settle(0, value)),
            _ => None,
        };
        if let Some(item) = item {
            fill(
                params.next().expect("a body's first parameter is its item"),
                item,
            );
        }
        fill_imports(params.as_slice(), parent, &def.imports);
        // A resumed run's item restores what it had checkpointed; one restored whole
        // has no root and ends here.
        let restored = child.restore_nested();
        let roots = if restored.is_empty() {
            def.body.roots.clone()
        } else {
            if let Some(progress) = &child.run.progress {
                let graph = &def.body.graph;
                let tasks = restored.iter().filter(|(n, _)| graph.kind(*n).is_task());
                progress.add_done(tasks.count() as u64);
            }
            child.board.restore(&def.body, restored)
        };
        let child = Arc::new(child);
        let now = Instant::now();
        for &root in &roots {
            let root = Job::new(root as usize, now);
            match child.mode(root.node) {
                Mode::Rayon => cpu_root(Arc::clone(&child), root),
                Mode::Tokio => child.dispatch(root),
            }
        }
    }

    /// An item ended: under a cap, start the next one waiting.
    pub(super) fn item_ended(self: &Arc<Self>) {
        let def = self.def();
        if def.at_once.is_none() || self.parent.run.stop.is_stopped() {
            return;
        }
        let next = self.next.fetch_add(1, Ordering::AcqRel);
        if next >= self.items.len() {
            return;
        }
        // An item a resumed run restores whole ends as it starts, and starts the next
        // from here: past a few levels, the next one starts on rayon instead, so a
        // long run of restored items never grows this thread's stack.
        let depth = ITEM_DEPTH.get();
        if depth >= MAX_INLINE || self.writer_behind() {
            let fan = Arc::clone(self);
            let context = Arc::clone(&self.parent.run);
            rayon::spawn(move || {
                guard(&context, "a capped fan-out's next item", || {
                    fan.wait_for_writer();
                    fan.start_next(next);
                });
            });
            return;
        }
        // Restored even if the start panics (a fault caught further up).
        struct Depth(u32);
        impl Drop for Depth {
            fn drop(&mut self) {
                ITEM_DEPTH.set(self.0);
            }
        }
        let _restore = Depth(depth);
        ITEM_DEPTH.set(depth + 1);
        self.start_next(next);
    }

    /// Whether this fan-out records its items' checkpoints and the writer is more than
    /// about a batch behind.
    fn writer_behind(&self) -> bool {
        let Some(sink) = self.parent.records() else {
            return false;
        };
        self.def().body.checkpoints_any && sink.backlog() > checkpoint::BACKLOG
    }

    /// On a rayon thread, before starting an item: waits while the writer is more than
    /// a batch behind, so that a crash loses about one batch of finished items, not
    /// every item that finished faster than the disk. Never on a tokio worker (capped
    /// starts from there go to rayon when the writer is behind), never after a stop.
    fn wait_for_writer(&self) {
        while self.writer_behind() && !self.parent.run.stop.is_stopped() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn start_next(self: &Arc<Self>, next: usize) {
        let mut cpu_roots = Vec::new();
        self.start_item(next, self.def(), &mut |run, job| cpu_roots.push((run, job)));
        spawn_roots(cpu_roots);
    }
}

/// One running fan-out: collects each item's slots as the item ends. When the last
/// item drops it, `Drop` gathers the results and resolves the fan-out's node.
pub(super) struct FanOut {
    pub(super) parent: Arc<Shared>,
    pub(super) node: usize,
    pub(super) ready: Instant,
    pub(super) started: Instant,
    pub(super) items: Box<[OnceLock<Box<[Slot]>>]>,
    /// For a fan-out that took its collection: each item, until its run starts.
    pub(super) owned: OwnedItems,
    /// Under a cap, the next item to start.
    pub(super) next: AtomicUsize,
}

impl Drop for FanOut {
    fn drop(&mut self) {
        let context = Arc::clone(&self.parent.run);
        guard(&context, "a fan-out's end", || self.end());
    }
}

impl FanOut {
    /// The last item ended: gathers the results and resolves the fan-out's node.
    fn end(&mut self) {
        let body = Arc::clone(&self.def().body);
        // Items a stop kept from starting have slots too, none of them resolved.
        let mut items: Vec<Box<[Slot]>> = self
            .items
            .iter_mut()
            .map(|item| {
                item.take()
                    .unwrap_or_else(|| Board::new(&body).take_slots())
            })
            .collect();
        let def = self.def();
        let result = (def.assemble)(&mut items, def.body.graph.output());
        let job = Job {
            node: self.node,
            ready: self.ready,
            attempt: 1,
            permit: false,
            retries: None,
            cache: None,
        };
        self.parent
            .end_fan_out(job, self.started, result, items.into());
    }
}

impl Shared {
    /// Resolves fan-out `job` once every item ended, with `result`, the gathered
    /// items: `Cancelled` if it did not succeed only because the run stopped (no item
    /// failed), else as its result says.
    pub(super) fn end_fan_out(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        items: ItemRuns,
    ) {
        self.drop_nested(job.node);
        // A failure a `match` in the body handled is not the item's.
        let body = match &self.plan.calls[job.node] {
            Call::FanOut(def) => Some(&def.body),
            _ => None,
        };
        let failed = items.rows.iter().any(|slots| {
            slots.iter().enumerate().any(|(node, slot)| {
                let failed = slot.get().is_some_and(|record| {
                    matches!(record.status, TaskStatus::Failed | TaskStatus::TimedOut)
                });
                failed && !body.is_some_and(|body| super::finish::handled(body, slots, node))
            })
        });
        if result.is_err() && self.run.stop.is_stopped() && !failed {
            return self.cancel(job, Some(started), items);
        }
        let mut spill = Vec::new();
        let next = self.resolve(job, Some(started), result, Caller::Rayon(&mut spill), items);
        spill.extend(next);
        self.spawn_on_rayon(&mut spill);
    }
}

impl Slots for Shared {
    fn slots(&self) -> SlotView<'_> {
        self.board.slots().into()
    }
}

impl Shared {
    /// Starts a fan-out: one child run of the body per item, each with the item and the
    /// imported values as its parameters, all sharing this run's stop, limits and clock.
    /// The fan-out's node resolves when the last item ends (see [`FanOut`]).
    pub(super) fn expand(self: &Arc<Self>, job: Job, def: &FanOutDef) {
        let slots = self.board.slots();
        // `Collection::items` and `IntoIterator` are the user's code: a panic fails the
        // node.
        let counted = catch_unwind(AssertUnwindSafe(|| match (def.collection, def.items) {
            (Some(collection), Items::Borrowed { len, .. }) => {
                (len(slots.into(), collection), Vec::new())
            }
            (Some(collection), Items::Owned(take)) => {
                let items = take(slots.into(), collection);
                (items.len(), items)
            }
            _ => (1, Vec::new()),
        }));
        let (count, owned) = match counted {
            Ok(counted) => counted,
            Err(panic) => {
                let error = TaskError::panicked(&*panic);
                let mut spill = Vec::new();
                let now = Instant::now();
                let next = self.resolve(
                    job,
                    Some(now),
                    Err(error),
                    Caller::Rayon(&mut spill),
                    ItemRuns::default(),
                );
                spill.extend(next);
                return self.spawn_on_rayon(&mut spill);
            }
        };
        // A run that records its items' checkpoints runs them scheduled: each node's
        // end is recorded; so does one that looks cached tasks up in a store.
        let records_items = self.records().is_some() && def.body.checkpoints_any;
        let looks_up = self.run.cache.is_some() && def.body.caches_any;
        if let (true, false, Some(fused)) = (def.runs_fused(), records_items || looks_up, def.fused)
        {
            if let (Some(typed), Some(collection), false) =
                (&def.typed, def.collection, self.run.options.item_rows)
            {
                return self.expand_typed(job, def, typed, collection, count);
            }
            return self.expand_fused(job, def, fused, count, owned);
        }
        let first = def.at_once.map_or(count, |cap| count.min(cap as usize));
        if let Some(progress) = &self.run.progress {
            progress.add_total(count as u64 * task_count(&def.body));
        }
        let fan = Arc::new(FanOut {
            parent: Arc::clone(self),
            node: job.node,
            ready: job.ready,
            started: Instant::now(),
            items: (0..count).map(|_| OnceLock::new()).collect(),
            owned: OwnedItems::new(owned),
            next: AtomicUsize::new(first),
        });
        // Rayon's threads start the items and run each item's CPU roots right away, so
        // an item's state lives only while it runs, whatever the number of items.
        (0..first).into_par_iter().for_each(|index| {
            fan.wait_for_writer();
            fan.start_item(index, def, &mut |run, job| run.run_on_rayon(job));
        });
        // With no items, this resolves the node right here.
        drop(fan);
    }

    /// The run of one item of a fan-out of this run.
    pub(super) fn child(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        completion: Completion,
        index: usize,
        path: Option<Arc<str>>,
    ) -> Shared {
        Shared {
            plan: Arc::clone(plan),
            run: Arc::clone(&self.run),
            board: Board::new(plan),
            span: tracing::info_span!(parent: &self.span, "item", index),
            completion: Some(completion),
            path,
        }
    }

    /// The prefix of the checkpoints of nested run `index` of fan-out or sub-workflow
    /// `node` (`each[17].`, `stats.`), if this run records and the body checkpoints
    /// anything.
    fn nested_path(&self, node: usize, def: &FanOutDef, index: usize) -> Option<Arc<str>> {
        self.records()?;
        // A body that checkpoints nothing itself may hold one that does.
        if !def.body.checkpoints_any {
            return None;
        }
        let outer = self.path.as_deref().unwrap_or("");
        let name = self.plan.graph.name_of(node);
        Some(match def.collection {
            Some(_) => format!("{outer}{name}[{index}].").into(),
            None => format!("{outer}{name}.").into(),
        })
    }

    /// Drops what a resumed run restored for the nested runs of fan-out or
    /// sub-workflow `node` that never started (the run stopped first): their values go
    /// when the fan-out ends, like its items' values, or when it ends without starting
    /// (cancelled, skipped or not taken before it expanded).
    pub(super) fn drop_nested(&self, node: usize) {
        let Some(nested) = &self.run.nested else {
            return;
        };
        let mut nested = nested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if nested.is_empty() {
            return;
        }
        let prefix = format!(
            "{}{}",
            self.path.as_deref().unwrap_or(""),
            self.plan.graph.name_of(node)
        );
        let left: Vec<String> = nested
            .range::<str, _>((
                std::ops::Bound::Included(&*prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(&prefix))
            .filter(|path| matches!(path.as_bytes().get(prefix.len()), Some(b'[' | b'.')))
            .cloned()
            .collect();
        let dropped: Vec<_> = left.iter().filter_map(|path| nested.remove(path)).collect();
        drop(nested);
        // Values' `Drop` is the user's code: outside the lock, one by one.
        let values = dropped.into_iter().flatten().map(|(_, value)| value);
        drop_all(values.enumerate(), |_| "a value restored for a nested run");
    }

    /// The nodes of this nested run that a resumed run restores, decided and decoded
    /// before the run started (`run::nested`); taken, so each is restored once.
    fn restore_nested(&self) -> Vec<(usize, Value)> {
        let (Some(path), Some(nested)) = (&self.path, &self.run.nested) else {
            return Vec::new();
        };
        let mut nested = nested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nested.remove(&**path).unwrap_or_default()
    }
}

/// Fills a body's import parameters (`slots`, after its item) with ways to the parent
/// run's nodes `imports`.
pub(super) fn fill_imports(slots: &[Slot], parent: &Arc<Shared>, imports: &[u32]) {
    for (slot, &node) in slots.iter().zip(imports) {
        let import = Import::Node {
            run: Arc::clone(parent) as Arc<dyn Slots>,
            node,
        };
        fill(slot, Box::new(import));
    }
}

/// Drops what an ended item of `def` (scheduled, or fused and kept for the report) no
/// longer needs: its imports (which hold the parent run) and every value but its
/// output, which the fan-out's end moves out. The report keeps each node's status,
/// times and errors only. A value whose `Drop` panics is contained, as at the end of a
/// run (see `Plan::drop_value`).
pub(super) fn forget_values(def: &FanOutDef, slots: &mut [Slot]) {
    let body = &def.body.graph;
    // The output, and for an `if` or `match` the arm's node whose value it is (the
    // branch's value points at it, and is kept too).
    let output = crate::value::aliased(&*slots, body.output());
    for (node, slot) in slots.iter_mut().enumerate() {
        if node < def.params() {
            drop_record(body.name_of(node), slot.take());
        } else if node != body.output()
            && node != output
            && let Some(record) = slot.get_mut()
            && !record.value.is::<crate::value::Import>()
        {
            let value = std::mem::replace(&mut record.value, Box::new(()));
            def.body.drop_value(node, value);
            // A nested fan-out's or sub-workflow's error holds its items' values
            // (`ItemsFailed`): the report keeps its message only.
            if matches!(body.kind(node), Kind::FanOut | Kind::Workflow)
                && let Some(history) = &mut record.history
                && let Some(error) = &mut history.error
            {
                *error = error.detached();
            }
        }
    }
}

/// The items of a fan-out that took its collection, each until its run starts.
pub(super) struct OwnedItems(Box<[Mutex<Option<Value>>]>);

impl Drop for OwnedItems {
    /// Items a stop kept from starting are dropped with the fan-out, one by one, a
    /// panic in a `Drop` contained (see `contain::drop_all`).
    fn drop(&mut self) {
        let items = std::mem::take(&mut self.0).into_vec().into_iter();
        let items =
            items.filter_map(|item| item.into_inner().unwrap_or_else(PoisonError::into_inner));
        drop_all(items.enumerate(), |_| "an item that did not start");
    }
}

impl OwnedItems {
    pub(super) fn new(items: Vec<Value>) -> Self {
        Self(
            items
                .into_iter()
                .map(|item| Mutex::new(Some(item)))
                .collect(),
        )
    }

    /// Item `index`, taken out (`None` if it was, or the fan-out took nothing).
    pub(super) fn take(&self, index: usize) -> Option<Value> {
        self.0
            .get(index)
            .and_then(|item| item.lock().unwrap_or_else(PoisonError::into_inner).take())
    }
}

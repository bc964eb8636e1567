//! Dropping the user's values behind a panic boundary: a value's `Drop` is the user's
//! code, and wherever the library lets go of a value (a run's end, an item's, a failed
//! fan-out's error, a future given up) a panic in it is logged at `warn` and goes no
//! further. While the thread unwinds, values are leaked instead: a second panic would
//! abort the process.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::value::{Import, Record, Slot};

/// Drops `value` (node `node`'s, or what `node` names), a panic in its `Drop`
/// contained: logged at `warn`, its payload dropped behind the boundary too (a
/// payload's own `Drop` may panic). While the thread unwinds, the value is leaked
/// instead: a second panic would abort the process. Containment is per value: a value
/// holding two elements whose `Drop`s both panic aborts, as anywhere in Rust.
#[inline]
pub(crate) fn drop_contained<T>(node: &str, value: T) {
    // A value with no `Drop` of its own (a number) has nothing that could panic.
    if !std::mem::needs_drop::<T>() {
        return;
    }
    if std::thread::panicking() {
        std::mem::forget(value);
        return;
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        warn_drop_panicked(node, panic);
    }
}

/// [`drop_contained`] for each of `values`, numbered (a node, an item), number `i`
/// named `name(i)` should its `Drop` panic: one boundary for the lot (a run's values,
/// an item's, a gathered `Vec`'s), not one per value. After a panic the rest are
/// dropped all the same, each outside the unwind of the one before (a `Vec` dropped
/// whole would drop them during it, and a second panic aborts). While the thread
/// unwinds, they are leaked instead.
pub(crate) fn drop_all<'n, V>(
    mut values: impl Iterator<Item = (usize, V)>,
    name: impl Fn(usize) -> &'n str,
) {
    if !std::mem::needs_drop::<V>() {
        return;
    }
    if std::thread::panicking() {
        std::mem::forget(values);
        return;
    }
    let mut at = 0;
    loop {
        let dropped = catch_unwind(AssertUnwindSafe(|| {
            for (number, value) in values.by_ref() {
                at = number;
                drop(value);
            }
        }));
        match dropped {
            Ok(()) => return,
            Err(panic) => warn_drop_panicked(name(at), panic),
        }
    }
}

/// Logs a contained panic of a value's `Drop`, then drops its payload behind the
/// boundary too (a payload's own `Drop` may panic).
#[cold]
fn warn_drop_panicked(node: &str, panic: Box<dyn Any + Send>) {
    tracing::warn!(
        node,
        panic = %crate::task::panic_message(&*panic),
        "a value's Drop panicked; the panic is contained"
    );
    let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
}

/// A slot's record taken out, dropped: an [`Import`] (the library's own, holding a
/// run, whose end may depend on this drop) as is, even while the thread unwinds; a
/// user's value as [`drop_contained`] says.
pub(crate) fn drop_record(node: &str, record: Option<Record>) {
    match record {
        Some(record) if record.value.is::<Import>() => drop(record),
        Some(record) => drop_contained(node, record),
        None => {}
    }
}

/// Empties `slots`, each record dropped as [`drop_record`] says (node `i` named by
/// `name(i)`): where a run's or an item's slots are let go of whole.
pub(crate) fn drop_slots<'n>(slots: &mut [Slot], name: impl Fn(usize) -> &'n str) {
    for (node, slot) in slots.iter_mut().enumerate() {
        drop_record(name(node), slot.take());
    }
}

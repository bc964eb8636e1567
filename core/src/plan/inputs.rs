//! What a node reads: [`Inputs`] (tuples of handles, or a `Vec` of them), borrowed
//! from a run as [`In`]; a workflow's [`Params`] and the [`Arguments`] a
//! sub-workflow call passes.

use super::builder::{Builder, Handle, NodeRef};
use crate::describe::Graph;
use crate::task::Outcome;
use crate::value::{Slot, SlotView, fill, outcome, value};

/// The handles a node reads: a tuple `()`, `(Handle<A>,)`, `(Handle<A>, Handle<B>)`, …
/// of up to twelve, or a `Vec<Handle<T>>` of any length (a wide fan-in).
pub trait Inputs: Send + Sync + 'static {
    /// The values, borrowed from the run: `(&'a A, &'a B, …)`.
    type Refs<'a>;
    /// What became of each input: `(&'a Outcome<A>, &'a Outcome<B>, …)`.
    type Outcomes<'a>;
    /// Borrows every input's value from a run's slots.
    #[doc(hidden)]
    fn refs<'a>(&self, slots: SlotView<'a>) -> Self::Refs<'a>;
    /// Borrows every input's outcome from a run's slots.
    #[doc(hidden)]
    fn outcomes<'a>(&self, slots: SlotView<'a>) -> Self::Outcomes<'a>;
    /// Appends where each input points.
    #[doc(hidden)]
    fn indices(&self, out: &mut Vec<NodeRef>);
    /// The same inputs as parameters of a fan-out's body, named as in `parent`.
    #[doc(hidden)]
    fn import(&self, body: &mut Builder<()>, parent: &Graph) -> Self
    where
        Self: Sized;
}

/// Inputs that match a workflow's parameters `P`, one handle per parameter, in order.
#[diagnostic::on_unimplemented(
    message = "these inputs do not match the workflow's parameters `{P}`",
    label = "the workflow takes `{P}`",
    note = "pass one `&binding` per parameter of the workflow, in order, of the same types"
)]
pub trait Arguments<P> {}

/// A tuple of a workflow's parameter types: `()`, `(A,)`, `(A, B)`, ….
pub trait Params: Send + Sync + 'static {
    /// How many parameters.
    const LEN: usize;
    /// One handle per parameter.
    type Handles;
    /// One name per parameter.
    type Names;
    #[doc(hidden)]
    fn declare(builder: &mut Builder<Self>, names: Self::Names) -> Self::Handles
    where
        Self: Sized;
    #[doc(hidden)]
    fn store(self, slots: &[Slot]);
}

macro_rules! tuples {
    ($( ($($T:ident $i:tt),*) )*) => {$(
        impl<$($T: Send + Sync + 'static),*> Inputs for ($(Handle<$T>,)*) {
            type Refs<'a> = ($(&'a $T,)*);
            type Outcomes<'a> = ($(&'a Outcome<$T>,)*);
            #[allow(clippy::unused_unit)]
            fn refs<'a>(&self, _slots: SlotView<'a>) -> Self::Refs<'a> {
                ($(value::<$T>(_slots, self.$i.id),)*)
            }
            #[allow(clippy::unused_unit)]
            fn outcomes<'a>(&self, _slots: SlotView<'a>) -> Self::Outcomes<'a> {
                ($(outcome::<$T>(_slots, self.$i.id),)*)
            }
            fn indices(&self, _out: &mut Vec<NodeRef>) {
                $(_out.push(self.$i.node_ref());)*
            }
            #[allow(clippy::unused_unit)]
            fn import(&self, _body: &mut Builder<()>, _parent: &Graph) -> Self {
                ($(_body.param::<$T>(_parent.name_of(self.$i.index()).to_owned().into()),)*)
            }
        }

        #[diagnostic::do_not_recommend]
        impl<$($T: Send + Sync + 'static),*> Arguments<($($T,)*)> for ($(Handle<$T>,)*) {}

        impl<$($T: Send + Sync + 'static),*> Params for ($($T,)*) {
            const LEN: usize = 0 $(+ { let _ = $i; 1 })*;
            type Handles = ($(Handle<$T>,)*);
            type Names = [&'static str; 0 $(+ { let _ = $i; 1 })*];
            #[allow(clippy::unused_unit)]
            fn declare(_builder: &mut Builder<Self>, _names: Self::Names) -> Self::Handles {
                ($(_builder.param::<$T>(_names[$i].into()),)*)
            }
            fn store(self, _slots: &[Slot]) {
                $(fill(&_slots[$i], Box::new(Outcome::Ok(self.$i)));)*
            }
        }
    )*};
}

tuples! {
    ()
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
}

impl<T: Send + Sync + 'static> Inputs for Vec<Handle<T>> {
    type Refs<'a> = Vec<&'a T>;
    type Outcomes<'a> = Vec<&'a Outcome<T>>;
    fn refs<'a>(&self, slots: SlotView<'a>) -> Self::Refs<'a> {
        self.iter().map(|h| value::<T>(slots, h.id)).collect()
    }
    fn outcomes<'a>(&self, slots: SlotView<'a>) -> Self::Outcomes<'a> {
        self.iter().map(|h| outcome::<T>(slots, h.id)).collect()
    }
    fn indices(&self, out: &mut Vec<NodeRef>) {
        out.extend(self.iter().map(|h| h.node_ref()));
    }
    fn import(&self, body: &mut Builder<()>, parent: &Graph) -> Self {
        self.iter()
            .map(|h| body.param::<T>(parent.name_of(h.index()).to_owned().into()))
            .collect()
    }
}

/// A node's declared inputs, borrowed from the run while the node executes.
pub struct In<'a, 'i, I> {
    pub(super) slots: SlotView<'a>,
    pub(super) inputs: &'i I,
}

impl<'a, I: Inputs> In<'a, '_, I> {
    /// Every input's value, in the order the node declared them.
    pub fn get(&self) -> I::Refs<'a> {
        self.inputs.refs(self.slots)
    }

    /// What became of every input, for a node whose [`TaskInfo::outcome_inputs`](crate::task::TaskInfo::outcome_inputs) lets
    /// it run whatever happened upstream.
    pub fn outcomes(&self) -> I::Outcomes<'a> {
        self.inputs.outcomes(self.slots)
    }

    /// Takes input `input` by value, out of the run: for an input whose node the
    /// builder was told is [`moved`](Builder::moved) into this one (its one reader).
    /// Call it once per attempt, and only for a node that makes one attempt: the
    /// value is gone after the first take.
    ///
    /// # Panics
    /// If `input` was not marked moved, or was taken already (the task then fails with
    /// the panic's message, like any panic in a task).
    pub fn take<T: 'static>(&self, input: Handle<T>) -> T {
        crate::value::take(self.slots, input.index() as u32)
    }

    /// Reads input `input`, which this node takes by value, without taking it: what a
    /// cached node's key function does ([`Builder::cache`](crate::Builder::cache))
    /// before the call takes it. `None` if it was taken already.
    pub fn peek<T: 'static, R>(&self, input: Handle<T>, read: impl FnOnce(&T) -> R) -> Option<R> {
        crate::value::peek_slot(self.slots, input.index() as u32, read)
    }
}

impl<'a, I> In<'a, '_, I> {
    /// The run's slots, for reading inputs one by one. (No bound on `I`: a wrong input
    /// type is reported once, where the node is added.)
    #[doc(hidden)]
    pub fn slots(&self) -> SlotView<'a> {
        self.slots
    }
}

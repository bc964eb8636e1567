//! Branches (`if`, `match`) as the plan holds them: a decision node picks an arm, the
//! nodes of every other arm are not taken, and a branch node gives the taken arm's
//! value. The graph stays flat: an arm's nodes are ordinary nodes of the graph that
//! also read their decision, so they are scheduled, retried, checkpointed and reported
//! like any other.

use std::borrow::Cow;

use super::builder::Builder;
use super::{Call, Handle, In, Inputs, Step};
use crate::describe::{Arm, Decision as Described};
use crate::task::{Kind, TaskError, TaskInfo};
use crate::value::{SlotView, Value, alias, ok, take};

/// A decision node of a [`Builder`]: it picks one of its arms, by index.
///
/// Made by [`Builder::decide`]; nodes added inside [`Builder::arm`] belong to one of
/// its arms; [`Builder::branch`] gives the value of the arm it took.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub(super) handle: Handle<u32>,
    pub(super) arms: u32,
}

impl Decision {
    /// How many arms it picks among.
    pub fn arms(self) -> u32 {
        self.arms
    }

    /// The decision node's position in its graph.
    pub fn index(self) -> usize {
        self.handle.index()
    }

    /// The decision node's handle: its value is the arm it picked (for a checkpoint).
    #[doc(hidden)]
    pub fn handle(self) -> Handle<u32> {
        self.handle
    }
}

/// The value of an `if` or `match`: which arm's node gives it, and how.
pub(crate) struct BranchDef {
    pub(crate) decision: u32,
    /// Per arm, the node whose value the branch takes; `None` for the missing `else`
    /// of an `if` (the value is then `None`).
    pub(crate) tails: Vec<Option<u32>>,
    pub(crate) make: MakeBranch,
}

/// How the taken arm's value becomes the branch's.
#[derive(Clone, Copy)]
pub(crate) enum MakeBranch {
    /// The branch's value is the arm's, shared in place (`if`/`else`, `match`).
    Shared,
    /// Moved into an `Option` (`if` without `else`): `some` takes the arm's value,
    /// `none` is the value when no arm was taken.
    Optional {
        some: fn(SlotView<'_>, u32) -> Value,
        none: fn() -> Value,
    },
}

impl BranchDef {
    /// The branch's value given the arm its decision took, or `None` if that arm's node
    /// did not succeed (the branch then does not either). Takes the arm's value if the
    /// branch moves it.
    pub(crate) fn value(&self, slots: SlotView<'_>, arm: u32) -> Result<Value, usize> {
        let tail = self.tails.get(arm as usize).copied().flatten();
        match (self.make, tail) {
            (MakeBranch::Optional { none, .. }, None) => Ok(none()),
            (_, None) => Err(self.decision as usize),
            (make, Some(tail)) => {
                let succeeded = slots
                    .record(tail as usize)
                    .is_some_and(|record| record.status.succeeded());
                match (make, succeeded) {
                    (_, false) => Err(tail as usize),
                    (MakeBranch::Shared, true) => Ok(alias(tail as usize)),
                    (MakeBranch::Optional { some, .. }, true) => Ok(some(slots, tail)),
                }
            }
        }
    }

    /// The inputs a resumed run must restore before it may restore the branch: the
    /// decision and the node of the arm it took.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn restores_with(&self, arm: u32) -> impl Iterator<Item = usize> + '_ {
        let tail = self.tails.get(arm as usize).copied().flatten();
        std::iter::once(self.decision as usize).chain(tail.map(|t| t as usize))
    }
}

fn some<T: Send + Sync + 'static>(slots: SlotView<'_>, node: u32) -> Value {
    ok::<Option<T>>(Some(take::<T>(slots, node)))
}

fn none<T: Send + Sync + 'static>() -> Value {
    ok::<Option<T>>(None)
}

impl<P: super::Params> Builder<P> {
    /// Adds a decision node: `decide` reads `inputs` and returns the arm to take, an
    /// index below `arms.len()` (an index out of range fails the node). `arms` labels
    /// each arm in the graph's drawings; `text` is what it decides on (a condition).
    /// Inputs whose bit is set in `outcome_inputs` are read as outcomes
    /// ([`In::outcomes`]): the decision runs whatever became of them, and a failure of
    /// such an input is *handled*: it does not fail the run (a `match` on a binding's
    /// outcome).
    ///
    /// The decision runs on rayon like a CPU task, once: it is not retried.
    ///
    /// # Panics
    /// If a handle of `inputs` belongs to another builder, or `arms` is empty.
    #[track_caller]
    pub fn decide<I, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        text: impl Into<Cow<'static, str>>,
        arms: &[&'static str],
        inputs: I,
        outcome_inputs: u16,
        decide: F,
    ) -> Decision
    where
        I: Inputs,
        F: for<'a, 'i> Fn(In<'a, 'i, I>) -> Result<u32, TaskError> + Send + Sync + 'static,
    {
        assert!(!arms.is_empty(), "a decision picks among at least one arm");
        let count = arms.len() as u32;
        // An `if` labels its arms `then`, `else`; anything else is a `match`.
        let task = if arms.first() == Some(&"then") {
            "if"
        } else {
            "match"
        };
        let info = TaskInfo {
            outcome_inputs,
            ..TaskInfo::new(task, Kind::Decision)
        };
        let handle = self.node(info, name, inputs, move |input| {
            Step::done(decide(input).and_then(|arm| {
                if arm < count {
                    Ok(arm)
                } else {
                    Err(TaskError::permanent(TaskError::msg(format_args!(
                        "picked arm {arm} of {count}"
                    ))))
                }
            }))
        });
        let node = handle.index();
        for (input, tolerant) in self.graph.node(node).edges() {
            if tolerant {
                self.handled_by
                    .entry(input as u32)
                    .or_default()
                    .push(node as u32);
            }
        }
        self.graph.add_decision(Described {
            text: text.into(),
            arms: arms.iter().map(|&arm| Cow::Borrowed(arm)).collect(),
        });
        Decision {
            handle,
            arms: count,
        }
    }

    /// Adds the nodes `body` adds to arm `arm` of `decision`: each of them runs only if
    /// the decision picks that arm, and is reported not taken otherwise (and so is
    /// whatever requires it). Returns what `body` returns: the arm's value, for
    /// [`branch`](Self::branch).
    ///
    /// # Panics
    /// If `decision` belongs to another builder, or has no arm `arm`.
    #[track_caller]
    pub fn arm<T>(
        &mut self,
        decision: Decision,
        arm: u32,
        body: impl FnOnce(&mut Self) -> Handle<T>,
    ) -> Handle<T> {
        let node = self.own(&[decision.handle.node_ref()])[0];
        assert!(
            arm < decision.arms,
            "arm {arm} of a decision with {} arms",
            decision.arms
        );
        self.arms.push(Arm {
            decision: node,
            arm,
        });
        let tail = body(self);
        self.arms.pop();
        tail
    }

    /// Adds the value of `decision`'s branch: the value of `tails[k]` when the decision
    /// picked arm `k`, shared in place (nothing is cloned). If that node did not succeed,
    /// neither does the branch.
    ///
    /// # Panics
    /// If a handle belongs to another builder, or `tails` has not one handle per arm.
    #[track_caller]
    pub fn branch<T: Send + Sync + 'static>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        decision: Decision,
        tails: Vec<Handle<T>>,
    ) -> Handle<T> {
        assert_eq!(
            tails.len(),
            decision.arms as usize,
            "a branch takes one value per arm of its decision"
        );
        let tails = tails.into_iter().map(Some).collect();
        self.add_branch(name.into(), decision, tails, MakeBranch::Shared)
    }

    /// [`branch`](Self::branch) for `workflow!`: the arms' values untyped, their one
    /// type `T` given by `_check`, a never-called closure that is a real `if` or `match`
    /// over the arms' values, so arms of different types are rustc's "incompatible
    /// types" over the user's `if`, in the user's types.
    #[doc(hidden)]
    #[track_caller]
    pub fn branch_checked<T: Send + Sync + 'static>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        decision: Decision,
        tails: Vec<super::NodeRef>,
        _check: impl FnOnce(u32) -> T,
    ) -> Handle<T> {
        // Checked to be this builder's by `add_branch`.
        let tails = tails
            .into_iter()
            .map(|tail| Some(Handle::<T>::new(tail.builder, tail.node as usize)))
            .collect();
        self.add_branch(name.into(), decision, tails, MakeBranch::Shared)
    }

    /// Adds the value of an `if` without `else`: `Some` of `then`'s value (moved into
    /// it: `then` must have no other reader) when `decision` picked arm 0, `None` when
    /// it picked arm 1.
    ///
    /// # Panics
    /// If a handle belongs to another builder, or `decision` does not have two arms.
    #[track_caller]
    pub fn branch_option<T: Send + Sync + 'static>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        decision: Decision,
        then: Handle<T>,
    ) -> Handle<Option<T>> {
        assert_eq!(decision.arms, 2, "an `if` without `else` has two arms");
        self.moved(then);
        let make = MakeBranch::Optional {
            some: some::<T>,
            none: none::<T>,
        };
        self.add_branch(name.into(), decision, vec![Some(then), None], make)
    }

    #[track_caller]
    fn add_branch<T: Send + Sync + 'static, O: Send + Sync + 'static>(
        &mut self,
        name: Cow<'static, str>,
        decision: Decision,
        tails: Vec<Option<Handle<T>>>,
        make: MakeBranch,
    ) -> Handle<O> {
        let mut refs = vec![decision.handle.node_ref()];
        refs.extend(tails.iter().flatten().map(|tail| tail.node_ref()));
        let nodes = self.own(&refs);
        // The decision is required; the arms' values are read whatever became of them
        // (those not taken are not taken).
        let mut edges: Vec<(u32, bool)> = std::iter::once((nodes[0], false))
            .chain(nodes[1..].iter().map(|&node| (node, true)))
            .collect();
        super::builder::merge_edges(&mut edges);
        let def = BranchDef {
            decision: nodes[0],
            tails: tails.iter().map(|tail| tail.map(|t| t.id)).collect(),
            make,
        };
        let info = self.intern(TaskInfo::new("branch", Kind::Branch));
        self.push(name, info, &mut edges, Call::Branch(Box::new(def)))
    }
}

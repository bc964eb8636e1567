//! Values that count themselves alive, per case, and the inputs of a generated node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use aqueduct::graph::{Builder, Graph, Handle, Inputs, NodeRef, SlotView};
use aqueduct::{Collection, Outcome};
use serde::ser::SerializeStruct as _;

use crate::model::{NOT_OK, child_value, many_hash};

/// How many values of one case are alive, in all and per origin (the uid of the node
/// that made them; parameters have their own).
pub(crate) struct Counters {
    pub(crate) id: u64,
    pub(crate) alive: AtomicI64,
    pub(crate) by_origin: Vec<AtomicI64>,
    /// Values whose `Drop` panics (D1) dropped while their thread unwound: each would
    /// have aborted the process.
    pub(crate) unwound_bombs: AtomicI64,
    /// Where the first of them was dropped.
    pub(crate) unwound_at: Mutex<String>,
    /// Every value deserialised (a checkpoint restored, a cached result loaded): its
    /// hash and item index.
    pub(crate) loaded: Mutex<std::collections::HashSet<(u64, u32)>>,
}

impl Counters {
    pub(crate) fn new(id: u64, origins: usize) -> Arc<Self> {
        let counters = Arc::new(Self {
            id,
            alive: AtomicI64::new(0),
            unwound_bombs: AtomicI64::new(0),
            unwound_at: Mutex::new(String::new()),
            by_origin: (0..origins).map(|_| AtomicI64::new(0)).collect(),
            loaded: Mutex::new(std::collections::HashSet::new()),
        });
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, Arc::downgrade(&counters));
        counters
    }

    fn add(&self, origin: u32, n: i64) {
        self.alive.fetch_add(n, Ordering::SeqCst);
        if let Some(c) = self.by_origin.get(origin as usize) {
            c.fetch_add(n, Ordering::SeqCst);
        }
    }

    pub(crate) fn alive(&self) -> i64 {
        self.alive.load(Ordering::SeqCst)
    }

    pub(crate) fn alive_from(&self, origin: u32) -> i64 {
        self.by_origin
            .get(origin as usize)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Deserialised values find their case's counters here (a checkpoint names its case).
fn registry() -> &'static Mutex<HashMap<u64, Weak<Counters>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Weak<Counters>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Every node's value: a hash of its node and inputs, its item index inside a fan-out,
/// and children, so that any value can be fanned out over. Counted alive from
/// construction (or clone, or deserialisation) to drop.
pub(crate) struct Val {
    pub(crate) v: u64,
    pub(crate) idx: u32,
    pub(crate) origin: u32,
    pub(crate) items: Vec<Val>,
    /// Its serialisation panics (a fault).
    pub(crate) poison: bool,
    /// Its `Drop` panics (D1). Dropped while the thread unwinds it cannot (outside
    /// the harness, that second panic would abort the process): it counts that instead
    /// ([`Counters::unwound_bombs`]), which the case reports.
    pub(crate) bomb: bool,
    counters: Arc<Counters>,
}

impl Val {
    pub(crate) fn new(
        counters: &Arc<Counters>,
        origin: u32,
        v: u64,
        idx: u32,
        items: Vec<Val>,
    ) -> Self {
        counters.add(origin, 1);
        Self {
            v,
            idx,
            origin,
            items,
            poison: false,
            bomb: false,
            counters: Arc::clone(counters),
        }
    }

    /// A value with `count` children of `sub` children each (as `model::tree`).
    pub(crate) fn tree(
        counters: &Arc<Counters>,
        origin: u32,
        v: u64,
        idx: u32,
        count: u32,
        sub: u32,
    ) -> Self {
        let items = (0..count)
            .map(|i| Self::tree(counters, origin, child_value(v, i), i, sub, 0))
            .collect();
        Self::new(counters, origin, v, idx, items)
    }

    /// How many values this tree holds.
    pub(crate) fn count(&self) -> i64 {
        1 + self.items.iter().map(Val::count).sum::<i64>()
    }
}

impl Val {
    /// This value, its `Drop` no longer panicking: a task that takes a value by value
    /// owns it, and a panic in its `Drop` would be the task's failure.
    pub(crate) fn defused(mut self) -> Self {
        self.bomb = false;
        self
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        let mut copy = Self::new(
            &self.counters,
            self.origin,
            self.v,
            self.idx,
            self.items.clone(),
        );
        copy.poison = self.poison;
        copy
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.counters.add(self.origin, -1);
        if self.bomb {
            if std::thread::panicking() {
                if self.counters.unwound_bombs.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Where: the library's frames of the first one.
                    let trace = std::backtrace::Backtrace::force_capture().to_string();
                    let frames: Vec<&str> = trace
                        .lines()
                        .filter(|l| l.contains("aqueduct::") && !l.contains("faults::"))
                        .map(str::trim)
                        .take(8)
                        .collect();
                    *self
                        .counters
                        .unwound_at
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = frames.join(" < ");
                }
            } else {
                panic!("[injected] a value whose Drop panics");
            }
        }
    }
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Val({:#x}, {} items)", self.v, self.items.len())
    }
}

impl Collection for Val {
    type Item = Val;
    fn items(&self) -> &[Val] {
        &self.items
    }
}

impl serde::Serialize for Val {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.poison {
            panic!("[injected] a value whose serialisation panics");
        }
        let mut s = serializer.serialize_struct("Val", 5)?;
        s.serialize_field("c", &self.counters.id)?;
        s.serialize_field("o", &self.origin)?;
        s.serialize_field("v", &self.v)?;
        s.serialize_field("i", &self.idx)?;
        s.serialize_field("items", &self.items)?;
        s.end()
    }
}

/// A value as serialised, read without counting it (the checker reads checkpoints).
#[derive(serde::Deserialize, Debug)]
pub(crate) struct Raw {
    pub(crate) c: u64,
    pub(crate) o: u32,
    pub(crate) v: u64,
    pub(crate) i: u32,
    pub(crate) items: Vec<Raw>,
}

impl Raw {
    fn into_val(self, counters: &Arc<Counters>) -> Val {
        let items = self
            .items
            .into_iter()
            .map(|r| r.into_val(counters))
            .collect();
        Val::new(counters, self.o, self.v, self.i, items)
    }
}

impl<'de> serde::Deserialize<'de> for Val {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(deserializer)?;
        let counters = registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&raw.c)
            .and_then(Weak::upgrade)
            .ok_or_else(|| serde::de::Error::custom(format!("no live case {}", raw.c)))?;
        counters
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((raw.v, raw.i));
        Ok(raw.into_val(&counters))
    }
}

/// A handle of either value type a node can have.
#[derive(Clone, Copy, Debug)]
pub(crate) enum H {
    One(Handle<Val>),
    Many(Handle<Vec<Val>>),
    /// A `branch_option`'s value.
    Opt(Handle<Option<Val>>),
}

/// A generated node's inputs: data inputs (each required or tolerant, by the task's
/// mask) and then, hidden from the model, the item of every enclosing fan-out, from
/// which the node learns its item path.
pub(crate) struct Mixed {
    /// Each input, whether it is read as an outcome, and whether it is taken by value
    /// (`In::take`, by the node's closure: `refs` leaves it `Taken`).
    pub(crate) data: Vec<(H, bool, bool)>,
    pub(crate) ctx: Vec<Handle<Val>>,
}

/// One data input as read.
pub(crate) enum Read<'a> {
    One(&'a Val),
    Many(&'a [Val]),
    OneOutcome(&'a Outcome<Val>),
    ManyOutcome(&'a Outcome<Vec<Val>>),
    Opt(&'a Option<Val>),
    OptOutcome(&'a Outcome<Option<Val>>),
    /// An input taken by value, once the closure took it.
    Owned(Val),
    OwnedMany(Vec<Val>),
    OwnedOpt(Option<Val>),
    /// An input to take: `refs` does not borrow it.
    Taken,
}

impl Read<'_> {
    /// What the value hash sees of this input.
    pub(crate) fn hash(&self) -> u64 {
        match self {
            Read::One(v) => v.v,
            Read::OneOutcome(Outcome::Ok(v)) => v.v,
            Read::Many(vs) => many_hash(vs.iter().map(|v| v.v)),
            Read::ManyOutcome(Outcome::Ok(vs)) => many_hash(vs.iter().map(|v| v.v)),
            Read::Owned(v) => v.v,
            Read::OwnedMany(vs) => many_hash(vs.iter().map(|v| v.v)),
            Read::Opt(o) => opt_hash(o.as_ref()),
            Read::OptOutcome(Outcome::Ok(o)) => opt_hash(o.as_ref()),
            Read::OwnedOpt(o) => opt_hash(o.as_ref()),
            _ => NOT_OK,
        }
    }
}

fn opt_hash(o: Option<&Val>) -> u64 {
    o.map_or(crate::branches::NONE, |v| v.v)
}

impl Inputs for Mixed {
    type Refs<'a> = (Vec<Read<'a>>, Vec<&'a Val>);
    type Outcomes<'a> = (Vec<Read<'a>>, Vec<&'a Val>);

    fn refs<'a>(&self, slots: SlotView<'a>) -> Self::Refs<'a> {
        let data = self
            .data
            .iter()
            .map(|&(h, tolerant, moved)| match (h, tolerant) {
                _ if moved => Read::Taken,
                (H::One(h), false) => Read::One((h,).refs(slots).0),
                (H::One(h), true) => Read::OneOutcome((h,).outcomes(slots).0),
                (H::Many(h), false) => Read::Many((h,).refs(slots).0),
                (H::Many(h), true) => Read::ManyOutcome((h,).outcomes(slots).0),
                (H::Opt(h), false) => Read::Opt((h,).refs(slots).0),
                (H::Opt(h), true) => Read::OptOutcome((h,).outcomes(slots).0),
            })
            .collect();
        let ctx = self.ctx.iter().map(|&h| (h,).refs(slots).0).collect();
        (data, ctx)
    }

    fn outcomes<'a>(&self, slots: SlotView<'a>) -> Self::Outcomes<'a> {
        self.refs(slots)
    }

    fn indices(&self, out: &mut Vec<NodeRef>) {
        for (h, _, _) in &self.data {
            match h {
                H::One(h) => (*h,).indices(out),
                H::Many(h) => (*h,).indices(out),
                H::Opt(h) => (*h,).indices(out),
            }
        }
        for h in &self.ctx {
            (*h,).indices(out);
        }
    }

    fn import(&self, body: &mut Builder<()>, parent: &Graph) -> Self {
        let data = self
            .data
            .iter()
            .map(|&(h, tolerant, moved)| {
                let h = match h {
                    H::One(h) => H::One((h,).import(body, parent).0),
                    H::Many(h) => H::Many((h,).import(body, parent).0),
                    H::Opt(h) => H::Opt((h,).import(body, parent).0),
                };
                (h, tolerant, moved)
            })
            .collect();
        let ctx = self
            .ctx
            .iter()
            .map(|&h| (h,).import(body, parent).0)
            .collect();
        Self { data, ctx }
    }
}

//! The builder's fan-outs (`for`): their bodies, typed chains and caps. (What
//! `workflow!` calls for them is in `mod.rs`, so rustc names it `Builder::…` in errors.)

use std::borrow::Cow;
use std::sync::Arc;

use super::super::chain::{Chain, Imports, ItemsOf, TypedBody};
use super::super::fanout::{Checked, assemble, fused, owned_items};
use super::super::{Call, Collection, FanOutDef, Inputs, Items, Params};
use super::{Builder, Handle};
use crate::task::{Kind, TaskInfo};

impl<P: Params> Builder<P> {
    /// Adds a fan-out: `body` builds the graph run once per item of `collection`, given
    /// the item's handle and the handles of `outer` (values of this graph the body
    /// reads, shared by reference with every item). The node's value is the body's
    /// output for every item, in input order. Items are read in place, by reference.
    ///
    /// Each item's nodes run as soon as their own inputs exist, independently of the
    /// other items. If an item fails, the fan-out fails after every item has ended.
    ///
    /// # Panics
    /// If `collection` or a handle of `outer` belongs to another builder, or if the
    /// body uses a handle it did not get from its own builder.
    #[track_caller]
    pub fn fan_out<C, O, T, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        collection: Handle<C>,
        item: impl Into<Cow<'static, str>>,
        outer: O,
        body: F,
    ) -> Handle<Vec<T>>
    where
        C: Collection,
        O: Inputs,
        T: Send + Sync + 'static,
        F: FnOnce(&mut Builder<()>, Handle<C::Item>, O) -> Handle<T>,
    {
        let collection = <C as super::super::fanout::FanOver>::checked(collection);
        self.fan_out_checked(name, collection, item, outer, body)
    }

    /// Adds a fan-out that takes its collection: like [`fan_out`](Self::fan_out), but
    /// each item is moved out of the collection into its own run, where one task may
    /// take it by value. The collection node's value is moved into this fan-out (see
    /// [`moved`](Self::moved)), so nothing else may read it.
    ///
    /// # Panics
    /// As [`fan_out`](Self::fan_out).
    #[track_caller]
    pub fn fan_out_owned<C, O, T, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        collection: Handle<C>,
        item: impl Into<Cow<'static, str>>,
        outer: O,
        body: F,
    ) -> Handle<Vec<T>>
    where
        C: IntoIterator + Send + Sync + 'static,
        C::Item: Send + Sync + 'static,
        O: Inputs,
        T: Send + Sync + 'static,
        F: FnOnce(&mut Builder<()>, Handle<C::Item>, O) -> Handle<T>,
    {
        self.moved(collection);
        let items = Items::Owned(owned_items::<C>);
        self.add_fan_out(
            name.into(),
            collection,
            item.into(),
            outer,
            body,
            (items, None),
        )
    }

    #[track_caller]
    pub(super) fn add_fan_out<C, I, O, T, F>(
        &mut self,
        name: Cow<'static, str>,
        collection: Handle<C>,
        item: Cow<'static, str>,
        outer: O,
        body: F,
        (items, typed): (Items, Option<ItemsOf<I>>),
    ) -> Handle<Vec<T>>
    where
        I: Send + Sync + 'static,
        O: Inputs,
        T: Send + Sync + 'static,
        F: FnOnce(&mut Builder<()>, Handle<I>, O) -> Handle<T>,
    {
        let mut refs = vec![collection.node_ref()];
        outer.indices(&mut refs);
        let mut imports = self.own(&refs);
        imports.remove(0);
        let (mut inner, ()) = Builder::<()>::new(name.clone(), []);
        inner.fakes.clone_from(&self.fakes);
        let item = inner.param::<I>(item);
        let imported = outer.import(&mut inner, &self.graph);
        let tail = body(&mut inner, item, imported);
        let chain = inner.chain.take();
        let body = inner.output(tail).plan;
        let mut edges: Vec<(u32, bool)> = std::iter::once(collection.id)
            .chain(imports.iter().copied())
            .map(|node| (node, false))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let fused = body.fusable().then_some(fused::<T> as super::super::Fused);
        let typed = match (typed, chain) {
            (Some(typed), Some(chain)) if fused.is_some() && body.chainable() => chain
                .downcast::<TypedBody<I, T>>()
                .ok()
                .map(|chain| super::super::chain::typed(typed, *chain)),
            _ => None,
        };
        let def = FanOutDef {
            body,
            collection: Some(collection.id),
            imports,
            items,
            assemble: assemble::<T>,
            drop_value: super::super::fanout::drop_gathered::<T>,
            at_once: None,
            fused,
            typed,
        };
        let info = self.intern(TaskInfo::new("for", Kind::FanOut));
        let body = Arc::clone(&def.body.graph);
        let handle = self.push(name, info, &mut edges, Call::FanOut(Box::new(def)));
        self.graph.add_body(body);
        handle
    }

    /// Gives a fan-out's body its typed chain: `workflow!` writes a body of task calls
    /// out as one closure that runs an item's tasks in order, so that a fused fan-out
    /// runs its items with no slots or boxes (see `plan/chain.rs`). `collection` is
    /// the fan-out's collection and `tail` the body's output. Not for hand-built
    /// bodies.
    #[doc(hidden)]
    pub fn chain<I, T, F>(&mut self, collection: Checked<I>, tail: Handle<T>, chain: F)
    where
        I: Send + Sync + 'static,
        T: Send + Sync + 'static,
        F: for<'c, 'r> Fn(&mut Chain<'c>, &'r I, &Imports<'r>) -> Option<T> + Send + Sync + 'static,
    {
        let _ = (collection, tail);
        let chain: TypedBody<I, T> = Arc::new(chain);
        self.chain = Some(Box::new(chain));
    }

    /// Caps a fan-out: at most `at_once` of its items run at a time, whatever tasks
    /// their bodies call; the next item starts when one ends. Items not yet started
    /// cost nothing but their place in the queue.
    ///
    /// # Panics
    /// If `fan_out` is not a fan-out's handle of this builder, or `at_once` is zero.
    #[track_caller]
    pub fn cap_items<T>(&mut self, fan_out: Handle<Vec<T>>, at_once: u32) {
        assert!(at_once > 0, "a fan-out's cap is at least 1");
        let node = self.own(&[fan_out.node_ref()])[0] as usize;
        match &mut self.calls[node] {
            Call::FanOut(def) => def.at_once = Some(at_once),
            _ => panic!("`cap_items` takes a handle returned by `fan_out`"),
        }
    }
}

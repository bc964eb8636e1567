//! Cached tasks (`#[task(cache)]`): how a node's cache key is made from its inputs, and
//! how its result is saved and loaded.
//!
//! A key is the SHA-256 of the task's module and name, its code hash and version
//! ([`CachePolicy`](crate::task::CachePolicy)), and each input's canonical serde
//! encoding ([`canonical`]: tagged, floats by their bits, maps sorted), in the order
//! the task takes them. The executor computes it before the task's first attempt and
//! looks it up in the run's store.

#[cfg(feature = "durable")]
mod canonical;

use super::Codec;
#[cfg(feature = "durable")]
use super::{Builder, Call, Handle, In, Inputs, Params};
use crate::value::SlotView;

/// What a cached node's key is made of: each input's encoding, in order.
///
/// [`Builder::cache`] hands one to the key function, which adds each input the task
/// reads with [`add`](Self::add).
#[derive(Debug, Default)]
pub struct CacheKey {
    bytes: Vec<u8>,
}

impl CacheKey {
    /// Adds one input, in a canonical encoding of its serde data model: a `HashMap`
    /// (keys of any type) encodes the same in any iteration order, floats by their
    /// bits. A collection that serialises as a sequence in a random order (a
    /// `HashSet`) does not: use a `BTreeSet`.
    ///
    /// # Errors
    /// The input's `Serialize` failed.
    #[cfg(feature = "durable")]
    pub fn add<T: serde::Serialize + ?Sized>(&mut self, input: &T) -> Result<(), String> {
        canonical::encode(input, &mut self.bytes).map_err(|error| error.to_string())
    }

    /// The inputs' encodings, one after the other.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Adds a cached node's inputs to its key.
pub(crate) type KeyFn = dyn Fn(SlotView<'_>, &mut CacheKey) -> Result<(), String> + Send + Sync;

/// How a cached node is keyed and its result kept.
#[cfg_attr(not(feature = "durable"), allow(dead_code))]
pub(crate) struct CacheDef {
    pub(crate) key: Box<KeyFn>,
    pub(crate) codec: Codec,
}

#[cfg(feature = "durable")]
impl<P: Params> Builder<P> {
    /// Caches a task node whose [`TaskInfo::cache`](crate::task::TaskInfo::cache) is
    /// set: before its first attempt, `key` adds the inputs the task reads (each
    /// through [`CacheKey::add`]) and the run looks the key up in its store; a stored
    /// result is loaded instead of calling the task, and a result computed is saved.
    /// `inputs` are the node's own; an input the node takes by value is read with
    /// [`In::peek`], never taken (the call takes it after). `workflow!` calls this for
    /// every `#[task(cache)]` call. A run without a store (see
    /// [`Runner::cache`](crate::Runner::cache)) calls the task every time.
    ///
    /// ```
    /// use aqueduct::graph::{Builder, Step};
    /// use aqueduct::task::{CachePolicy, TaskInfo};
    /// use aqueduct::Kind;
    ///
    /// let (mut b, (text,)) = Builder::<(String,)>::new("words", ["text"]);
    /// let mut info = TaskInfo::new("count", Kind::Cpu);
    /// info.cache = Some(CachePolicy { code: 1, version: 0, module: module_path!(), ttl: None });
    /// let count = b.node(info, "count", (text,), |i| {
    ///     let (text,) = i.get();
    ///     Step::done(Ok(text.split_whitespace().count()))
    /// });
    /// b.cache(count, (text,), |i, key| {
    ///     let (text,) = i.get();
    ///     key.add(text)
    /// });
    /// let workflow = b.output(count);
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// assert_eq!(rt.block_on(workflow.run(("a b c".into(),))).unwrap(), 3);
    /// ```
    ///
    /// # Panics
    /// If `node` belongs to another builder, is not a task, or its task has no cache
    /// policy.
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    #[track_caller]
    pub fn cache<T, I, K>(&mut self, node: Handle<T>, inputs: I, key: K)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        I: Inputs,
        K: for<'a, 'i> Fn(In<'a, 'i, I>, &mut CacheKey) -> Result<(), String>
            + Send
            + Sync
            + 'static,
    {
        let node = self.own(&[node.node_ref()])[0];
        // A fake's result is not the task's: it is neither looked up nor saved.
        if self.graph.is_fake(node as usize) {
            return;
        }
        let info = self.graph.info(node as usize);
        assert!(
            matches!(self.calls[node as usize], Call::Task(_)) && info.cache.is_some(),
            "`cache` takes the handle of a task node whose `TaskInfo` has a `cache` policy \
             (`{}` has none)",
            info.name
        );
        let key: Box<KeyFn> = Box::new(move |slots, out| {
            key(
                In {
                    slots,
                    inputs: &inputs,
                },
                out,
            )
        });
        let codec = Codec {
            encode: super::durable::encode::<T>,
            decode: super::durable::decode::<T>,
        };
        self.caches.insert(node, CacheDef { key, codec });
    }
}

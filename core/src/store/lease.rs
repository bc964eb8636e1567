//! Who runs a stored run: a lease (owner `host:pid:tag` and a heartbeat) claimed with
//! the run, renewed while it runs, released when it ends or its runner is dropped.

#[cfg(feature = "durable")]
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "durable")]
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(feature = "durable")]
use super::{Store, StoreError};

/// How long a lease holds without a heartbeat. A running run renews its lease about
/// every third of this; a run whose process died on another host can be taken over
/// once this has passed since its last heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a running run renews its lease when it has nothing to save.
#[cfg(feature = "durable")]
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Whether a lease held by `owner` (`host:pid:tag`), last renewed at `heartbeat_ms`
/// (milliseconds since the Unix epoch), still holds at `now_ms`: its heartbeat is
/// younger than [`LEASE_TTL`], and, if the owner is a process of this host, that
/// process is alive (checked in `/proc` on Linux, so a killed run can be resumed at
/// once on its own host). An owner id of another form holds until its heartbeat is
/// stale.
pub fn lease_holds(owner: &str, heartbeat_ms: u64, now_ms: u64) -> bool {
    if heartbeat_ms.saturating_add(LEASE_TTL.as_millis() as u64) < now_ms {
        return false;
    }
    let mut parts = owner.rsplitn(3, ':');
    let (_tag, pid, host) = (parts.next(), parts.next(), parts.next());
    match (host, pid.and_then(|pid| pid.parse::<u32>().ok())) {
        (Some(host), Some(pid)) if host == hostname() => process_alive(pid),
        _ => true,
    }
}

/// A fresh owner id for one run attempt: `host:pid:tag`, the tag random.
#[cfg(feature = "durable")]
pub(crate) fn new_owner() -> String {
    use std::hash::{BuildHasher, RandomState};
    let tag = RandomState::new().hash_one(now_ms()) & 0xff_ffff;
    format!("{}:{}:{tag:06x}", hostname(), std::process::id())
}

/// This machine's name, as far as it can be known.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name = name.trim().replace(':', "-");
    if name.is_empty() {
        "unknown-host".to_owned()
    } else {
        name
    }
}

/// Whether process `pid` of this host is alive (and not a zombie). Where that cannot
/// be known (no `/proc`), it is taken as alive: the lease then expires by time.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (name) S …`: the state follows the last `)`; Z and X are dead.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X'))
}

/// Now, in milliseconds since the Unix epoch.
#[cfg(feature = "durable")]
pub(crate) fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// `time` in milliseconds since the Unix epoch.
#[cfg(feature = "durable")]
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A run's claim on its record in the store: released when dropped, unless the run's
/// end was recorded (which gives the lease up in the same write).
#[cfg(feature = "durable")]
pub(crate) struct Lease {
    store: Arc<dyn Store>,
    run: String,
    owner: String,
    held: bool,
}

#[cfg(feature = "durable")]
impl Lease {
    /// The lease `owner` has just claimed on run `run`.
    pub(crate) fn new(store: Arc<dyn Store>, run: String, owner: String) -> Self {
        Self {
            store,
            run,
            owner,
            held: true,
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn run(&self) -> &str {
        &self.run
    }

    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// The store gave the lease up itself (with the run's end): nothing to release.
    pub(crate) fn given_up(mut self) {
        self.held = false;
    }
}

#[cfg(feature = "durable")]
impl Drop for Lease {
    fn drop(&mut self) {
        if self.held {
            let store = &*self.store;
            // Nothing to tell anyone if it fails: the lease then expires by itself.
            let _ = guarded(store, "release", || store.release(&self.run, &self.owner));
        }
    }
}

/// Calls into a store, turning a panic into a [`StoreError`] that says where.
#[cfg(feature = "durable")]
pub(crate) fn guarded<T>(
    store: &dyn Store,
    what: &str,
    call: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|payload| {
        let location = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.location()))
            .unwrap_or_else(|_| "(unknown)".to_owned());
        Err(StoreError {
            location,
            message: format!(
                "the store panicked in `{what}`: {}",
                crate::task::panic_message(payload.as_ref())
            ),
        })
    })
}

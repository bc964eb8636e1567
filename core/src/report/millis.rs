//! Durations in a report's JSON: milliseconds as a number (fractional, so nothing below
//! a millisecond is lost), in fields named `…_ms`. Reports saved before this layout
//! held `{ "secs": …, "nanos": … }` under the plain names; those still load.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A duration as saved by any version: milliseconds, or serde's own layout.
#[derive(Deserialize)]
#[serde(untagged)]
enum Saved {
    Millis(f64),
    Parts { secs: u64, nanos: u32 },
}

impl Saved {
    fn duration(self) -> Result<Duration, String> {
        match self {
            Saved::Millis(ms) => Duration::try_from_secs_f64(ms / 1e3)
                .map_err(|_| format!("{ms} is not a duration in milliseconds")),
            Saved::Parts { secs, nanos } => Ok(Duration::new(secs, 0)
                .checked_add(Duration::from_nanos(u64::from(nanos)))
                .unwrap_or(Duration::MAX)),
        }
    }
}

fn millis(duration: &Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(duration))
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Saved::deserialize(d)?
        .duration()
        .map_err(serde::de::Error::custom)
}

/// The same for an optional duration (`null` when there is none).
pub(super) mod option {
    use super::*;

    pub(in crate::report) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => s.serialize_some(&millis(duration)),
            None => s.serialize_none(),
        }
    }

    pub(in crate::report) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Saved>::deserialize(d)?
            .map(Saved::duration)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

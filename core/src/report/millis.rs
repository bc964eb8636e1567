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

/// Written as every duration the crate serialises (see `retry::millis`).
pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    crate::retry::millis(duration, s)
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
        crate::retry::millis_option(duration, s)
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

#[cfg(test)]
mod tests {
    use super::super::{RunReport, TaskReport};
    use std::time::Duration;

    /// A report saved before durations were milliseconds still loads, and saves again
    /// in the new layout.
    #[test]
    fn a_report_in_the_old_layout_loads() {
        let old = r#"{"workflow":"w","wall":{"secs":1,"nanos":500000000},"tasks":[
            {"node":"a","task":"a","kind":"cpu","status":"succeeded",
             "started_at":{"secs":0,"nanos":1000},"queue_wait":{"secs":0,"nanos":0},
             "duration":{"secs":2,"nanos":0},"error":null,
             "attempts":[{"started_at":{"secs":0,"nanos":1000},"duration":{"secs":2,"nanos":0},"error":null}]}
        ],"critical_path":["a"],"cores":2}"#;
        let report: RunReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.wall, Duration::from_millis(1_500));
        let task: &TaskReport = &report.tasks[0];
        assert_eq!(task.started_at, Some(Duration::from_micros(1)));
        assert_eq!(task.attempts[0].duration, Duration::from_secs(2));
        let new = serde_json::to_value(&report).unwrap();
        assert_eq!(new["wall_ms"], 1_500.0);
        assert_eq!(new["tasks"][0]["started_at_ms"], 0.001);
        assert_eq!(new["tasks"][0]["duration_ms"], 2_000.0);
        let again: RunReport = serde_json::from_value(new).unwrap();
        assert_eq!(again.tasks[0].duration, Duration::from_secs(2));
    }

    #[test]
    fn a_negative_or_huge_duration_is_an_error_not_a_panic() {
        for bad in ["-1", "1e300"] {
            let json = format!(
                r#"{{"workflow":"w","wall_ms":{bad},"tasks":[],"critical_path":[],"cores":1}}"#
            );
            let error = serde_json::from_str::<RunReport>(&json).unwrap_err();
            assert!(error.to_string().contains("not a duration"), "{error}");
        }
    }
}

//! Times as docker writes them: RFC 3339, UTC, with nanoseconds
//! (`2026-12-05T12:00:00.123456789Z`), and Go's zero time for one that has
//! not happened. Records keep them typed; this is their text on disk and
//! in `inspect`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

pub type Timestamp = DateTime<Utc>;

/// Go's zero time, which docker shows for a time that has not happened.
pub const ZERO: &str = "0001-01-01T00:00:00Z";

pub fn now() -> Timestamp {
    Utc::now()
}

/// How long before `now` `then` was (zero if it is later: clocks move).
pub fn age(then: Timestamp, now: Timestamp) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

/// docker's text for a time (chrono's own `Display` and serde trim the
/// fraction, docker's does not).
pub fn format(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// docker's text for a time that may not have happened.
pub fn format_or_zero(t: Option<&Timestamp>) -> String {
    t.map(format).unwrap_or_else(|| ZERO.to_string())
}

/// `#[serde(with = "crate::timestamp::rfc3339")]` for a `Timestamp`.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(d)
    }
}

/// `#[serde(default, with = "crate::timestamp::optional")]` for an
/// `Option<Timestamp>`: `null` when absent; Go's zero time reads as absent.
pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Ok(Option::<Timestamp>::deserialize(d)?.filter(|t| t.timestamp() != ZERO_SECONDS))
    }

    /// `0001-01-01T00:00:00Z` in Unix seconds.
    const ZERO_SECONDS: i64 = -62_135_596_800;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Times {
        #[serde(with = "rfc3339")]
        at: Timestamp,
        #[serde(default, with = "optional")]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn written_as_docker_does_and_read_back() {
        let t: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let json = serde_json::to_string(&Times { at: t, maybe: None }).unwrap();
        assert_eq!(json, r#"{"at":"2026-12-05T12:00:00.000000000Z","maybe":null}"#);
        let back: Times = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Times { at: t, maybe: None });
        assert_eq!(format_or_zero(None), ZERO);
    }

    #[test]
    fn reads_what_earlier_versions_wrote() {
        let old = r#"{"at":"2026-12-05T12:00:00.123456789Z","maybe":"2026-12-05T12:00:01.5Z"}"#;
        let times: Times = serde_json::from_str(old).unwrap();
        assert_eq!(format(&times.at), "2026-12-05T12:00:00.123456789Z");
        assert_eq!(
            times.maybe.map(|t| format(&t)).as_deref(),
            Some("2026-12-05T12:00:01.500000000Z")
        );
        for absent in [
            r#"{"at":"2026-12-05T12:00:00Z"}"#,
            r#"{"at":"2026-12-05T12:00:00Z","maybe":"0001-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(serde_json::from_str::<Times>(absent).unwrap().maybe, None, "{absent}");
        }
        assert!(serde_json::from_str::<Times>(r#"{"at":"yesterday"}"#).is_err());
    }
}

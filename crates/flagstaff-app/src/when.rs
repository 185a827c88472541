//! When a scheduled change executes: a local time in an IANA time zone, an instant with an
//! offset, or LaunchDarkly's `executionDate` in Unix milliseconds, resolved to one instant.
//!
//! A launch "at 08:00 in Auckland" means 08:00 on the wall clocks there, whatever the offset
//! that day: the tz database (compiled into the binary, see `jiff` in Cargo.toml) decides. Two
//! days a year a wall-clock time is not one instant:
//! - in the spring gap (02:30 when clocks jump from 02:00 to 03:00) it does not exist: we refuse
//!   it and say what the clocks do, rather than silently moving a launch by an hour;
//! - in the autumn fold (01:30 twice when clocks go back) it exists twice: we take the first,
//!   and the response names the offset, so nobody has to guess.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

use crate::{AppError, ErrorCode, Result};

/// The moment of a scheduled change as a request gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct When {
    /// A local date and time (`2026-12-01T08:00:00`) read in `time_zone`, or an instant with
    /// an offset (`2026-11-30T19:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_at: Option<String>,
    /// An IANA time zone such as `Pacific/Auckland`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Unix milliseconds, as LaunchDarkly's API takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_date: Option<i64>,
}

impl When {
    /// Whether the request names a moment at all.
    pub fn is_given(&self) -> bool {
        self.execute_at.is_some() || self.execution_date.is_some()
    }
}

/// A resolved moment: the instant, and how people said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Moment {
    /// Unix milliseconds.
    pub at: i64,
    /// The time zone it was given in, if one.
    pub time_zone: Option<String>,
    /// The local date and time with its offset that day, e.g. `2026-12-01T08:00:00+13:00`.
    pub local: Option<String>,
}

fn invalid(field: String, message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidField, field, message)
}

/// Resolves `when`; `prefix` is the JSON path of the object holding its fields (empty at the
/// top level), for errors.
pub(crate) fn resolve(when: &When, prefix: &str) -> Result<Moment> {
    let path = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match (&when.execute_at, &when.execution_date) {
        (Some(_), Some(_)) => Err(invalid(
            path("executionDate"),
            "give executeAt (with timeZone) or executionDate, not both",
        )),
        (None, None) => Err(invalid(
            path("executeAt"),
            "a scheduled change needs executeAt (with timeZone) or executionDate",
        )),
        (None, Some(ms)) => {
            let instant = Timestamp::from_millisecond(*ms)
                .map_err(|_| invalid(path("executionDate"), "not a time (Unix milliseconds)"))?;
            let time_zone = when
                .time_zone
                .as_deref()
                .map(|name| zone(name, &path))
                .transpose()?;
            Ok(Moment {
                at: *ms,
                local: time_zone.as_ref().map(|tz| {
                    instant
                        .to_zoned(tz.clone())
                        .strftime("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string()
                }),
                time_zone: when.time_zone.clone(),
            })
        }
        (Some(text), None) => match &when.time_zone {
            Some(name) => {
                let tz = zone(name, &path)?;
                let civil: DateTime = text.parse().map_err(|_| {
                    invalid(
                        path("executeAt"),
                        format!(
                            "{:?} is not a local date and time like 2026-12-01T08:00:00",
                            shorten(text)
                        ),
                    )
                })?;
                local_in(civil, &tz, name, &path("executeAt"))
            }
            None => {
                let instant: Timestamp = text.parse().map_err(|_| {
                    invalid(
                        path("executeAt"),
                        format!(
                            "{:?} has no offset: give timeZone (e.g. Pacific/Auckland) or an offset (…Z, …+13:00)",
                            shorten(text)
                        ),
                    )
                })?;
                Ok(Moment {
                    at: instant.as_millisecond(),
                    time_zone: None,
                    local: None,
                })
            }
        },
    }
}

fn zone(name: &str, path: &dyn Fn(&str) -> String) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|_| {
        invalid(
            path("timeZone"),
            format!(
                "{:?} is not a time zone of the tz database (e.g. Pacific/Auckland, America/New_York, UTC)",
                shorten(name)
            ),
        )
    })
}

/// A civil time in a zone, with the gap refused and the fold resolved to its first instant.
fn local_in(civil: DateTime, tz: &TimeZone, name: &str, field: &str) -> Result<Moment> {
    let ambiguous = tz.to_ambiguous_zoned(civil);
    if let AmbiguousOffset::Gap { before, after } = ambiguous.offset() {
        return Err(invalid(
            field.to_owned(),
            format!(
                "{civil} does not exist in {name}: clocks move from UTC{before} to UTC{after} that night; choose a time outside the gap",
            ),
        ));
    }
    let zoned = ambiguous.earlier().map_err(|e| {
        invalid(
            field.to_owned(),
            format!("cannot place {civil} in {name}: {e}"),
        )
    })?;
    Ok(Moment {
        at: zoned.timestamp().as_millisecond(),
        time_zone: Some(name.to_owned()),
        local: Some(zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()),
    })
}

/// The instant `when` names, in Unix milliseconds (what a scheduled change's `executionDate`
/// becomes), or the error naming the field.
pub fn execution_date(when: &When) -> Result<i64> {
    Ok(resolve(when, "")?.at)
}

/// The local date and time of `at` in `time_zone` (`YYYY-MM-DDTHH:MM:SS±HH:MM`), for display.
pub fn local_time(at: i64, time_zone: &str) -> Option<String> {
    let tz = TimeZone::get(time_zone).ok()?;
    let instant = Timestamp::from_millisecond(at).ok()?;
    Some(
        instant
            .to_zoned(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    )
}

/// User input echoed in a message, cut to a readable length.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(execute_at: &str, time_zone: &str) -> Result<Moment> {
        resolve(
            &When {
                execute_at: Some(execute_at.into()),
                time_zone: Some(time_zone.into()),
                execution_date: None,
            },
            "",
        )
    }

    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn eight_in_the_morning_in_auckland_follows_daylight_saving() {
        // New Zealand summer time (UTC+13) from the last Sunday of September to the first
        // Sunday of April; standard time (UTC+12) in between.
        assert_eq!(
            at("2026-12-01T08:00:00", "Pacific/Auckland").unwrap().at,
            utc("2026-11-30T19:00:00Z")
        );
        assert_eq!(
            at("2026-07-01T08:00:00", "Pacific/Auckland").unwrap().at,
            utc("2026-06-30T20:00:00Z")
        );
        // On both change days 08:00 is after the change, so it is that day's new offset.
        assert_eq!(
            at("2026-09-27T08:00:00", "Pacific/Auckland").unwrap().at,
            utc("2026-09-26T19:00:00Z")
        );
        assert_eq!(
            at("2026-04-05T08:00:00", "Pacific/Auckland").unwrap().at,
            utc("2026-04-04T20:00:00Z")
        );
        assert_eq!(
            at("2026-09-27T08:00:00", "Pacific/Auckland")
                .unwrap()
                .local
                .as_deref(),
            Some("2026-09-27T08:00:00+13:00")
        );
    }

    #[test]
    fn new_york_gap_is_refused_and_fold_takes_the_first_instant() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let gap = at("2026-03-08T02:30:00", "America/New_York").unwrap_err();
        assert!(gap.to_string().contains("does not exist"), "{gap}");
        assert!(gap.to_string().starts_with("executeAt:"), "{gap}");
        assert_eq!(
            at("2026-03-08T08:00:00", "America/New_York").unwrap().at,
            utc("2026-03-08T12:00:00Z")
        );
        assert_eq!(
            at("2026-03-07T08:00:00", "America/New_York").unwrap().at,
            utc("2026-03-07T13:00:00Z")
        );
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        let fold = at("2026-11-01T01:30:00", "America/New_York").unwrap();
        assert_eq!(fold.at, utc("2026-11-01T05:30:00Z"));
        assert_eq!(fold.local.as_deref(), Some("2026-11-01T01:30:00-04:00"));
        assert_eq!(
            at("2026-11-01T08:00:00", "America/New_York").unwrap().at,
            utc("2026-11-01T13:00:00Z")
        );
    }

    #[test]
    fn instants_and_launchdarkly_milliseconds() {
        let with_offset = resolve(
            &When {
                execute_at: Some("2026-12-01T08:00:00+13:00".into()),
                ..When::default()
            },
            "",
        )
        .unwrap();
        assert_eq!(with_offset.at, utc("2026-11-30T19:00:00Z"));
        let ms = resolve(
            &When {
                execution_date: Some(1_800_000_000_000),
                time_zone: Some("Europe/Berlin".into()),
                ..When::default()
            },
            "",
        )
        .unwrap();
        assert_eq!(ms.at, 1_800_000_000_000);
        assert_eq!(ms.local.as_deref(), Some("2027-01-15T09:00:00+01:00"));
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (When::default(), "steps[1].executeAt"),
            (
                When {
                    execute_at: Some("2026-12-01T08:00:00".into()),
                    ..When::default()
                },
                "steps[1].executeAt",
            ),
            (
                When {
                    execute_at: Some("tomorrow".into()),
                    time_zone: Some("UTC".into()),
                    ..When::default()
                },
                "steps[1].executeAt",
            ),
            (
                When {
                    execute_at: Some("2026-12-01T08:00:00".into()),
                    time_zone: Some("Mars/Olympus".into()),
                    ..When::default()
                },
                "steps[1].timeZone",
            ),
            (
                When {
                    execute_at: Some("2026-12-01T08:00:00Z".into()),
                    execution_date: Some(1),
                    ..When::default()
                },
                "steps[1].executionDate",
            ),
            (
                When {
                    execution_date: Some(i64::MAX),
                    ..When::default()
                },
                "steps[1].executionDate",
            ),
        ];
        for (when, field) in cases {
            match resolve(&when, "steps[1]") {
                Err(AppError::Invalid { field: f, .. }) => assert_eq!(f, field, "{when:?}"),
                other => panic!("{when:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn local_time_reads_back_in_the_zone() {
        assert_eq!(
            local_time(utc("2026-11-30T19:00:00Z"), "Pacific/Auckland").as_deref(),
            Some("2026-12-01T08:00:00+13:00")
        );
        assert_eq!(local_time(0, "Nowhere/Else"), None);
    }
}

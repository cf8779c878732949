//! When a cron schedule fires, in a time zone: the next start after an
//! instant, and the most recent start up to now with how many were missed
//! (upstream's `mostRecentScheduleTime`).
//!
//! Schedules match wall-clock time in the zone. Across a daylight-saving
//! change a wall time that does not exist (spring forward) is skipped, and
//! one that occurs twice (fall back) fires once, at its first occurrence.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};
use skiff_api_types::validation::{CronSchedule, parse_cron_schedule};

/// How far ahead a schedule is searched (Feb 29 on a Monday needs years).
const SEARCH_YEARS: i16 = 30;

/// A parsed schedule and the zone it is read in.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    cron: CronSchedule,
    tz: TimeZone,
}

/// Why a CronJob's schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Error {
    #[error("unparseable schedule {schedule:?}: {reason}")]
    Unparseable { schedule: String, reason: String },
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
}

impl Schedule {
    /// Parses `schedule` (optionally with a `TZ=`/`CRON_TZ=` prefix) read
    /// in `time_zone` (IANA), else in `local`.
    pub fn parse(schedule: &str, time_zone: Option<&str>, local: &TimeZone) -> Result<Self, Error> {
        let cron = parse_cron_schedule(schedule).map_err(|reason| Error::Unparseable {
            schedule: schedule.to_owned(),
            reason,
        })?;
        let prefixed = ["TZ=", "CRON_TZ="]
            .iter()
            .find_map(|p| schedule.strip_prefix(p))
            .and_then(|rest| rest.split_whitespace().next());
        let tz = match time_zone.or(prefixed) {
            Some(name) => {
                TimeZone::get(name).map_err(|_| Error::UnknownTimeZone(name.to_owned()))?
            }
            None => local.clone(),
        };
        Ok(Schedule { cron, tz })
    }

    /// The first start strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.cron {
            CronSchedule::Every(d) => {
                let secs = d.as_secs().max(1) as i64;
                Some(Timestamp::from_second(t.as_second() + secs).ok()?)
            }
            CronSchedule::Fields {
                minutes,
                hours,
                days_of_month,
                months,
                days_of_week,
                day_of_month_star,
                day_of_week_star,
            } => {
                let bit = |set: u64, n: i8| set & (1u64 << n) != 0;
                let local = t.to_zoned(self.tz.clone()).datetime();
                let first = local.date();
                let last_year = first.year().saturating_add(SEARCH_YEARS);
                let mut day = first;
                while day.year() <= last_year {
                    let dom = bit(*days_of_month, day.day());
                    let dow = bit(*days_of_week, day.weekday().to_sunday_zero_offset());
                    let day_ok = if *day_of_month_star || *day_of_week_star {
                        dom && dow
                    } else {
                        dom || dow
                    };
                    if bit(*months, day.month()) && day_ok {
                        for h in (0..24).filter(|h| bit(*hours, *h)) {
                            for m in (0..60).filter(|m| bit(*minutes, *m)) {
                                let wall = DateTime::from_parts(day, Time::constant(h, m, 0, 0));
                                let Some(at) = self.instant(wall) else {
                                    continue;
                                };
                                if at > t {
                                    return Some(at);
                                }
                            }
                        }
                    }
                    day = next_day(day)?;
                }
                None
            }
        }
    }

    /// The instant of a wall time: `None` in a gap, the first of two in a
    /// fold.
    fn instant(&self, wall: DateTime) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(wall);
        match ambiguous.offset() {
            AmbiguousOffset::Gap { .. } => None,
            _ => ambiguous.earlier().ok(),
        }
    }

    /// The latest start in `(earliest, now]` and how many starts that range
    /// holds (`None`: none is due yet).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, u64) {
        let mut last = None;
        let mut count = 0u64;
        let mut t = earliest;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            last = Some(next);
            count += 1;
            t = next;
        }
        (last, count)
    }

    /// `t` as RFC 3339 in the schedule's zone, as Go's `time.RFC3339`
    /// writes it (`Z` for UTC).
    pub fn format(&self, t: Timestamp) -> String {
        let z = t.to_zoned(self.tz.clone());
        if z.offset().seconds() == 0 {
            z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }
}

fn next_day(d: Date) -> Option<Date> {
    d.checked_add(1.day()).ok()
}

/// `t` minus `secs` seconds.
pub(crate) fn before(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_sub(SignedDuration::from_secs(secs)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(schedule: &str) -> Schedule {
        Schedule::parse(schedule, None, &TimeZone::UTC).unwrap()
    }

    #[test]
    fn standard_fields_and_descriptors_find_the_next_start() {
        let s = utc("*/15 * * * *");
        assert_eq!(
            s.next_after(at("2024-01-01T10:07:30Z")),
            Some(at("2024-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(at("2024-01-01T10:15:00Z")),
            Some(at("2024-01-01T10:30:00Z"))
        );
        assert_eq!(
            utc("@hourly").next_after(at("2024-01-01T10:00:00Z")),
            Some(at("2024-01-01T11:00:00Z"))
        );
        assert_eq!(
            utc("@daily").next_after(at("2024-01-01T10:00:00Z")),
            Some(at("2024-01-02T00:00:00Z"))
        );
        assert_eq!(
            utc("0 9 * * mon-fri").next_after(at("2024-01-05T10:00:00Z")),
            Some(at("2024-01-08T09:00:00Z")),
            "Friday after nine: next Monday"
        );
        // Day of month OR day of week when both are restricted.
        assert_eq!(
            utc("0 0 13 * 5").next_after(at("2024-09-01T00:00:00Z")),
            Some(at("2024-09-06T00:00:00Z"))
        );
        assert_eq!(
            utc("0 0 29 2 *").next_after(at("2024-03-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            utc("@every 90s").next_after(at("2024-01-01T00:00:00Z")),
            Some(at("2024-01-01T00:01:30Z"))
        );
    }

    #[test]
    fn a_time_zone_moves_the_start_and_its_annotation() {
        let s = Schedule::parse("0 9 * * *", Some("Asia/Tokyo"), &TimeZone::UTC).unwrap();
        let next = s.next_after(at("2024-01-01T00:00:00Z")).unwrap();
        assert_eq!(next, at("2024-01-02T00:00:00Z"));
        assert_eq!(s.format(next), "2024-01-02T09:00:00+09:00");
        assert_eq!(utc("* * * * *").format(next), "2024-01-02T00:00:00Z");
        let prefixed =
            Schedule::parse("CRON_TZ=Asia/Tokyo 0 9 * * *", None, &TimeZone::UTC).unwrap();
        assert_eq!(prefixed.next_after(at("2024-01-01T00:00:00Z")), Some(next));
        assert_eq!(
            Schedule::parse("0 9 * * *", Some("Mars/Olympus"), &TimeZone::UTC).unwrap_err(),
            Error::UnknownTimeZone("Mars/Olympus".into())
        );
        assert!(matches!(
            Schedule::parse("61 * * * *", None, &TimeZone::UTC),
            Err(Error::Unparseable { .. })
        ));
    }

    #[test]
    fn daylight_saving_skips_missing_wall_times_and_fires_repeated_ones_once() {
        let s = Schedule::parse("30 2 * * *", Some("America/New_York"), &TimeZone::UTC).unwrap();
        // 2024-03-10 02:30 does not exist in New York: the next is on the 11th.
        assert_eq!(
            s.next_after(at("2024-03-10T05:00:00Z")),
            Some(at("2024-03-11T06:30:00Z"))
        );
        let s = Schedule::parse("30 1 * * *", Some("America/New_York"), &TimeZone::UTC).unwrap();
        // 2024-11-03 01:30 happens twice: EDT (05:30Z), then EST (06:30Z).
        let first = s.next_after(at("2024-11-03T04:00:00Z")).unwrap();
        assert_eq!(first, at("2024-11-03T05:30:00Z"));
        assert_eq!(s.next_after(first), Some(at("2024-11-04T06:30:00Z")));
        // Hourly keeps firing every real hour across the change.
        let hourly =
            Schedule::parse("0 * * * *", Some("America/New_York"), &TimeZone::UTC).unwrap();
        assert_eq!(
            hourly.next_after(at("2024-03-10T06:30:00Z")),
            Some(at("2024-03-10T07:00:00Z"))
        );
    }

    #[test]
    fn the_most_recent_start_counts_the_missed_ones() {
        let s = utc("*/10 * * * *");
        let (last, count) = s.most_recent(at("2024-01-01T10:00:00Z"), at("2024-01-01T10:35:00Z"));
        assert_eq!(last, Some(at("2024-01-01T10:30:00Z")));
        assert_eq!(count, 3);
        let (last, count) = s.most_recent(at("2024-01-01T10:30:00Z"), at("2024-01-01T10:35:00Z"));
        assert_eq!((last, count), (None, 0));
    }
}

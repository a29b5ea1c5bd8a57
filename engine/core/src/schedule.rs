//! Time arithmetic for timers: lengths of time, ISO 8601 repeating intervals and cron
//! schedules, all evaluated in the process's time zone.
//!
//! Pure functions of their inputs (no clock): the runtime and the engine pass `now`.
//! Calendar parts (days, weeks, months, years of an ISO 8601 duration, and cron
//! fields) are counted on the local calendar, so "every day at 09:00" stays at 09:00
//! across a daylight-saving change; hours, minutes and seconds are exact.

use chrono::{DateTime, Days, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// The zone a process uses when it names none.
pub const DEFAULT_ZONE: Tz = chrono_tz::Asia::Tokyo;

/// A length of time: calendar months and days (local calendar) plus an exact part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub months: u32,
    pub days: u32,
    pub exact: Duration,
}

impl Span {
    pub fn exact(d: Duration) -> Span {
        Span { months: 0, days: 0, exact: d }
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.exact.is_zero()
    }

    /// `t` moved forward by this span; calendar parts on the wall clock of `tz`.
    pub fn add_to(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let mut out = t;
        if self.months > 0 || self.days > 0 {
            let local = t.with_timezone(&tz).naive_local();
            let moved = local
                .checked_add_months(Months::new(self.months))
                .and_then(|l| l.checked_add_days(Days::new(u64::from(self.days))))
                .unwrap_or(local);
            out = local_to_utc(moved, tz);
        }
        out + self.exact
    }
}

/// A wall-clock time in `tz` as an instant. In a gap (spring forward) the first
/// instant after the gap; in an overlap (fall back) the earlier of the two.
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let mut probe = local;
            for _ in 0..(4 * 60) {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = tz.from_local_datetime(&probe) {
                    return t.with_timezone(&Utc);
                }
            }
            tz.from_utc_datetime(&local).with_timezone(&Utc)
        }
    }
}

/// Midnight at the start of `date` in `tz`.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    local_to_utc(date.and_hms_opt(0, 0, 0).expect("midnight exists"), tz)
}

/// A length of time as a designer writes it: `30s`, `5m`, `2h`, `3d`, `1w` (exact), or
/// ISO 8601 `PT2H`, `P3D`, `P1M`, `P1Y2M3DT4H5M6S`, `P2W` (days and up on the calendar).
pub fn parse_span(text: &str) -> Result<Span, String> {
    let s = text.trim();
    if s.starts_with('P') || s.starts_with('p') {
        return parse_iso_duration(s);
    }
    humantime::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(|d| Duration::from_std(d).map_err(|e| e.to_string()))
        .map(Span::exact)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `30s`, `5m`, `2h`, `3d` or `P3D`"))
}

fn parse_iso_duration(text: &str) -> Result<Span, String> {
    let bad = |why: &str| format!("`{text}` is not an ISO 8601 duration ({why}); write e.g. `PT2H`, `P3D` or `P1M`");
    let body = &text[1..];
    if body.is_empty() {
        return Err(bad("nothing after P"));
    }
    let mut span = Span::default();
    let mut in_time = false;
    let mut number = String::new();
    let mut seen_any = false;
    for c in body.chars() {
        match c {
            'T' | 't' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' => number.push(c),
            _ => {
                let n: u32 = number.parse().map_err(|_| bad("a number must come before each unit"))?;
                number.clear();
                seen_any = true;
                match (in_time, c.to_ascii_uppercase()) {
                    (false, 'Y') => span.months += n * 12,
                    (false, 'M') => span.months += n,
                    (false, 'W') => span.days += n * 7,
                    (false, 'D') => span.days += n,
                    (true, 'H') => span.exact += Duration::hours(i64::from(n)),
                    (true, 'M') => span.exact += Duration::minutes(i64::from(n)),
                    (true, 'S') => span.exact += Duration::seconds(i64::from(n)),
                    _ => return Err(bad(&format!("unknown unit `{c}`"))),
                }
            }
        }
    }
    if !number.is_empty() {
        return Err(bad("a number without a unit at the end"));
    }
    if !seen_any {
        return Err(bad("no amount"));
    }
    Ok(span)
}

/// A fixed date-time (RFC 3339), or a date (midnight in `tz`).
pub fn parse_instant(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(local) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Ok(local_to_utc(local, tz));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(start_of_day(d, tz));
    }
    Err(format!("`{text}` is not a date (2026-12-01) or date-time (2026-12-01T09:00:00+09:00)"))
}

/// A recurring schedule of a timer start event.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Five-field cron (minute hour day-of-month month day-of-week) on the wall clock
    /// of the process's zone.
    Cron(Box<croner::Cron>),
    /// ISO 8601 repeating interval `R[n]/<start>/<duration>`.
    Cycle { start: DateTime<Utc>, every: Span, repeats: Option<u32> },
}

impl Schedule {
    pub fn cron(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "cron `{text}` has {fields} fields; write five: minute hour day-of-month month day-of-week, e.g. `0 9 * * 1-5`"
            ));
        }
        croner::Cron::from_str(text).map(|c| Schedule::Cron(Box::new(c))).map_err(|e| format!("cron `{text}`: {e}"))
    }

    /// `R/2026-12-01T09:00:00+09:00/P1D` (for ever) or `R5/2026-12-01/PT1H` (5 times).
    pub fn cycle(text: &str, tz: Tz) -> Result<Schedule, String> {
        let bad = |why: String| {
            format!("cycle `{text}`: {why}; write `R/<start>/<duration>` or `R<n>/<start>/<duration>`, e.g. `R/2026-12-01T09:00:00+09:00/P1D`")
        };
        let parts: Vec<&str> = text.trim().split('/').collect();
        let [r, start, every] = parts.as_slice() else {
            return Err(bad("expected three parts separated by `/`".into()));
        };
        let repeats = match r.strip_prefix('R').or_else(|| r.strip_prefix('r')) {
            Some("") | Some("-1") => None,
            Some(n) => Some(n.parse::<u32>().map_err(|_| bad(format!("`{r}` is not R or R<number>")))?),
            None => return Err(bad(format!("`{r}` is not R or R<number>"))),
        };
        let start = parse_instant(start, tz).map_err(bad)?;
        let every = parse_span(every).map_err(bad)?;
        if every.is_zero() {
            return Err(bad("the interval is zero".into()));
        }
        Ok(Schedule::Cycle { start, every, repeats })
    }

    /// The first time strictly after `after`, or `None` when the schedule has ended.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => {
                c.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|t| t.with_timezone(&Utc))
            }
            Schedule::Cycle { start, every, repeats } => {
                let mut t = *start;
                let mut n = 0u32;
                // Bounded: schedules are validated to move forward, and a far past start
                // is skipped in large strides below.
                if t <= after && every.months == 0 && every.days == 0 {
                    let step = every.exact.num_milliseconds().max(1);
                    let k = ((after - t).num_milliseconds() / step).max(0);
                    let k = u32::try_from(k).unwrap_or(u32::MAX);
                    n = k;
                    t += Duration::milliseconds(step * i64::from(k));
                }
                for _ in 0..1_000_000 {
                    if repeats.is_some_and(|r| n >= r) {
                        return None;
                    }
                    if t > after {
                        return Some(t);
                    }
                    t = every.add_to(t, tz);
                    n = n.saturating_add(1);
                }
                None
            }
        }
    }

    /// The latest time at or before `at` that is after `since`, if any.
    pub fn latest_between(&self, since: DateTime<Utc>, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut last = None;
        let mut t = since;
        // Walk forward; missed runs are few in practice (downtime), and the walk is bounded.
        for _ in 0..100_000 {
            match self.next_after(t, tz) {
                Some(n) if n <= at => {
                    last = Some(n);
                    t = n;
                }
                _ => break,
            }
        }
        last
    }
}

/// The IANA zone named `name`.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("`{name}` is not an IANA time zone; write e.g. `Asia/Tokyo`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span("3d").unwrap(), Span::exact(Duration::days(3)));
        assert_eq!(parse_span("PT1H30M").unwrap(), Span::exact(Duration::minutes(90)));
        let p = parse_span("P1Y2M3DT4S").unwrap();
        assert_eq!((p.months, p.days, p.exact), (14, 3, Duration::seconds(4)));
        assert!(parse_span("P").is_err());
        assert!(parse_span("P3").is_err());
        assert!(parse_span("soon").is_err());
    }

    #[test]
    fn calendar_days_keep_the_wall_clock_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 is the spring-forward day in New York.
        let before = t("2026-03-07T09:00:00-05:00");
        let next = parse_span("P1D").unwrap().add_to(before, ny);
        assert_eq!(next, t("2026-03-08T09:00:00-04:00"));
        let exact = parse_span("24h").unwrap().add_to(before, ny);
        assert_eq!(exact, t("2026-03-08T10:00:00-04:00"));
    }

    #[test]
    fn cron_in_a_zone_across_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::cron("30 2 * * *").unwrap();
        // 2026-03-29 02:30 does not exist in Berlin: it runs at 03:00 CEST, once.
        let next = s.next_after(t("2026-03-28T12:00:00+01:00"), berlin).unwrap();
        assert_eq!(next, t("2026-03-29T03:00:00+02:00"));
        let after = s.next_after(next, berlin).unwrap();
        assert_eq!(after, t("2026-03-30T02:30:00+02:00"));
        assert!(Schedule::cron("0 0 9 * * *").is_err(), "six fields are refused");
    }

    #[test]
    fn cycles() {
        let s = Schedule::cycle("R3/2026-12-01T09:00:00+09:00/PT1H", DEFAULT_ZONE).unwrap();
        let first = s.next_after(t("2026-11-30T00:00:00Z"), DEFAULT_ZONE).unwrap();
        assert_eq!(first, t("2026-12-01T09:00:00+09:00"));
        let third = s.next_after(t("2026-12-01T10:00:00+09:00"), DEFAULT_ZONE).unwrap();
        assert_eq!(third, t("2026-12-01T11:00:00+09:00"));
        assert_eq!(s.next_after(third, DEFAULT_ZONE), None);
        let forever = Schedule::cycle("R/2026-12-01/P1D", DEFAULT_ZONE).unwrap();
        assert_eq!(
            forever.latest_between(t("2026-12-01T00:00:00+09:00"), t("2026-12-04T12:00:00+09:00"), DEFAULT_ZONE),
            Some(t("2026-12-04T00:00:00+09:00"))
        );
    }
}

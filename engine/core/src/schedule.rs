//! Time arithmetic for timers: lengths of time, ISO 8601 repeating intervals and cron
//! schedules, all evaluated in the process's time zone.
//!
//! Pure functions of their inputs (no clock): the runtime and the engine pass `now`.
//! Calendar parts (days, weeks, months, years of an ISO 8601 duration, and cron
//! fields) are counted on the local calendar, so "every day at 09:00" stays at 09:00
//! across a daylight-saving change; hours, minutes and seconds are exact.
//!
//! All arithmetic is checked: a time outside years 0000–9999 (what RFC 3339 can
//! write) or a length over [`MAX_SPAN_DAYS`] is an error the caller turns into a
//! diagnostic (deploy), an incident (run time) or a 422 (API), never a panic.

use chrono::{DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// The zone a process uses when it names none.
pub const DEFAULT_ZONE: Tz = chrono_tz::Asia::Tokyo;

/// Longest length of time a timer, `every`, timeout or backoff may have: 100 years
/// (36,525 days). Longer is a deploy error; nobody means it, and it keeps every
/// computed time far inside the representable range.
pub const MAX_SPAN_DAYS: i64 = 36_525;
/// The same bound in calendar months (100 years).
pub const MAX_SPAN_MONTHS: u32 = 1_200;

/// The earliest instant the engine computes or stores: 0000-01-01T00:00:00Z.
pub fn earliest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(0, 1, 1).expect("year 0 exists").and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// The latest instant the engine computes or stores: 9999-12-31T23:59:59.999Z (RFC
/// 3339 writes years with four digits).
pub fn latest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .expect("year 9999 exists")
        .and_hms_milli_opt(23, 59, 59, 999)
        .expect("valid time")
        .and_utc()
}

/// `t` if it lies in years 0000–9999, else an error saying so.
pub fn in_range(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if t < earliest() || t > latest() {
        return Err(format!("the time {t} is outside years 0000–9999"));
    }
    Ok(t)
}

/// `t + by`, checked: an overflow or a result outside years 0000–9999 is an error.
pub fn checked_add(t: DateTime<Utc>, by: Duration) -> Result<DateTime<Utc>, String> {
    let out = t.checked_add_signed(by).ok_or_else(|| out_of_range(t, by))?;
    in_range(out).map_err(|_| out_of_range(t, by))
}

fn out_of_range(t: DateTime<Utc>, by: Duration) -> String {
    let days = by.num_days();
    if days.unsigned_abs() >= 1 {
        format!("{t} moved by {days} days is outside years 0000–9999")
    } else {
        format!("{t} moved by {by} is outside years 0000–9999")
    }
}

/// A `std` duration as a chrono one, at most [`MAX_SPAN_DAYS`] long; `what` names it
/// in the error (`"timeout"`, `"ttl"`).
pub fn bounded(d: std::time::Duration, what: &str) -> Result<Duration, String> {
    let max = Duration::days(MAX_SPAN_DAYS);
    match Duration::from_std(d) {
        Ok(c) if c <= max => Ok(c),
        _ => Err(format!("{what} is longer than 100 years ({MAX_SPAN_DAYS} days), the longest allowed")),
    }
}

/// A length of time: calendar months and days (local calendar) plus an exact part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub months: u32,
    pub days: u32,
    pub exact: Duration,
    /// Business days of the Japanese calendar (`3bd`), counted on the local date
    /// before the rest; the time of day is kept.
    pub business_days: u32,
}

impl Span {
    pub fn exact(d: Duration) -> Span {
        Span { months: 0, days: 0, exact: d, business_days: 0 }
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.exact.is_zero() && self.business_days == 0
    }

    /// `t` moved forward by this span; calendar parts on the wall clock of `tz`. A
    /// result outside years 0000–9999 is an error.
    pub fn add_to(&self, t: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, String> {
        let mut out = t;
        if self.business_days > 0 {
            let local = t.with_timezone(&tz).naive_local();
            let date = crate::calendar::add_business_days(
                local.date(),
                i64::from(self.business_days),
                &crate::ambient::days_off(),
            )?;
            out = in_range(local_to_utc(date.and_time(local.time()), tz))?;
        }
        if self.months > 0 || self.days > 0 {
            let t = out;
            let local = t.with_timezone(&tz).naive_local();
            let moved = local
                .checked_add_months(Months::new(self.months))
                .and_then(|l| l.checked_add_days(Days::new(u64::from(self.days))))
                .ok_or_else(|| format!("{t} plus {} months and {} days is out of range", self.months, self.days))?;
            out = in_range(local_to_utc(moved, tz))?;
        }
        checked_add(out, self.exact)
    }

    /// The first time `start + k × span` (k ≥ 1) strictly after `after`. Exact spans
    /// jump there in one stride (a reminder every minute after a year of downtime
    /// must not walk half a million steps under the instance lock); calendar spans
    /// are at least a day, so the walk is at most [`MAX_SPAN_DAYS`] steps a century.
    pub fn next_after(&self, start: DateTime<Utc>, after: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>, String> {
        if self.is_zero() {
            return Err("the interval is zero".into());
        }
        let mut t = start;
        if self.months == 0 && self.days == 0 && self.business_days == 0 && t < after {
            let step = self.exact.num_milliseconds().max(1);
            let behind = (after - t).num_milliseconds();
            // Whole steps that stay at or before `after`; the loop below takes the last one.
            t = checked_add(t, Duration::milliseconds((behind / step) * step))?;
        }
        for _ in 0..1_000_000 {
            t = self.add_to(t, tz)?;
            if t > after {
                return Ok(t);
            }
        }
        Err(format!("no time after {after} within a million intervals"))
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

/// The last second of `date` (23:59:59) on the wall clock of `tz`: when a task due
/// "on" a date becomes overdue. Checked for years 0000–9999.
pub fn end_of_day(date: NaiveDate, tz: Tz) -> Result<DateTime<Utc>, String> {
    check_year(date)?;
    in_range(local_to_utc(date.and_hms_opt(23, 59, 59).expect("valid time"), tz))
}

fn check_year(date: NaiveDate) -> Result<(), String> {
    if !(0..=9999).contains(&date.year()) {
        return Err(format!("the date {date} is outside years 0000–9999"));
    }
    Ok(())
}

/// A length of time as a designer writes it: `30s`, `5m`, `2h`, `3d`, `1w` (exact), or
/// ISO 8601 `PT2H`, `P3D`, `P1M`, `P1Y2M3DT4H5M6S`, `P2W` (days and up on the calendar).
/// At most 100 years ([`MAX_SPAN_DAYS`], [`MAX_SPAN_MONTHS`]).
pub fn parse_span(text: &str) -> Result<Span, String> {
    let s = text.trim();
    let span = if let Some(n) = s.strip_suffix("bd").and_then(|n| n.trim().parse::<u32>().ok()) {
        // Business days (the Japanese calendar), e.g. `3bd`.
        if i64::from(n) > crate::calendar::MAX_BUSINESS_DAYS {
            return Err(format!("`{text}` counts more than {} business days", crate::calendar::MAX_BUSINESS_DAYS));
        }
        Span { business_days: n, ..Span::default() }
    } else if s.starts_with('P') || s.starts_with('p') {
        parse_iso_duration(s)?
    } else {
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `30s`, `5m`, `2h`, `3d` or `P3D`"))?;
        Span::exact(bounded(d, &format!("`{text}`"))?)
    };
    span.check_bounds(text)?;
    Ok(span)
}

impl Span {
    /// At most 100 years in all, a month counted as its average 30.4375 days (so
    /// `P100Y` is allowed, `P100Y1D` is not).
    fn check_bounds(&self, text: &str) -> Result<(), String> {
        let month_days = i64::from(self.months) * MAX_SPAN_DAYS / i64::from(MAX_SPAN_MONTHS);
        let exact_days = (self.exact.num_seconds() + 86_399) / 86_400;
        // A business day is at most a few calendar days; 10,000 of them stay far
        // inside the 100 years (checked when parsed).
        if self.months > MAX_SPAN_MONTHS
            || self.exact > Duration::days(MAX_SPAN_DAYS)
            || month_days + i64::from(self.days) + exact_days > MAX_SPAN_DAYS
        {
            return Err(format!("`{text}` is longer than 100 years, the longest timer allowed"));
        }
        Ok(())
    }
}

fn parse_iso_duration(text: &str) -> Result<Span, String> {
    let bad = |why: &str| format!("`{text}` is not an ISO 8601 duration ({why}); write e.g. `PT2H`, `P3D` or `P1M`");
    let body = &text[1..];
    if body.is_empty() {
        return Err(bad("nothing after P"));
    }
    let too_long = || format!("`{text}` is longer than 100 years, the longest timer allowed");
    let mut span = Span::default();
    let mut in_time = false;
    let mut number = String::new();
    let mut seen_any = false;
    for c in body.chars() {
        match c {
            'T' | 't' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' => number.push(c),
            _ => {
                if number.is_empty() {
                    return Err(bad("a number must come before each unit"));
                }
                // Any number past u32 is far over the cap: say so, not "not a number".
                let n: u32 = number.parse().map_err(|_| too_long())?;
                number.clear();
                seen_any = true;
                // Checked: `P999999999Y` is 12 billion months, past u32.
                let (months, days, exact) = match (in_time, c.to_ascii_uppercase()) {
                    (false, 'Y') => (n.checked_mul(12), Some(0), Some(0)),
                    (false, 'M') => (Some(n), Some(0), Some(0)),
                    (false, 'W') => (Some(0), n.checked_mul(7), Some(0)),
                    (false, 'D') => (Some(0), Some(n), Some(0)),
                    (true, 'H') => (Some(0), Some(0), i64::from(n).checked_mul(3600)),
                    (true, 'M') => (Some(0), Some(0), i64::from(n).checked_mul(60)),
                    (true, 'S') => (Some(0), Some(0), Some(i64::from(n))),
                    _ => return Err(bad(&format!("unknown unit `{c}`"))),
                };
                span.months = months.and_then(|m| span.months.checked_add(m)).ok_or_else(too_long)?;
                span.days = days.and_then(|d| span.days.checked_add(d)).ok_or_else(too_long)?;
                span.exact = exact
                    .and_then(Duration::try_seconds)
                    .and_then(|e| span.exact.checked_add(&e))
                    .ok_or_else(too_long)?;
                span.check_bounds(text)?;
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

/// A fixed date-time (RFC 3339), or a date (midnight in `tz`), in years 0000–9999.
pub fn parse_instant(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else if let Ok(local) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        check_year(local.date()).map_err(|e| format!("`{text}`: {e}"))?;
        local_to_utc(local, tz)
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        check_year(d).map_err(|e| format!("`{text}`: {e}"))?;
        start_of_day(d, tz)
    } else {
        return Err(format!("`{text}` is not a date (2026-12-01) or date-time (2026-12-01T09:00:00+09:00)"));
    };
    in_range(t).map_err(|e| format!("`{text}`: {e}"))
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
        let cron = croner::Cron::from_str(text).map_err(|e| format!("cron `{text}`: {e}"))?;
        // Five fields repeat at least every 28 years, so a pattern with no time after
        // 2000 never matches (`0 0 31 2 *`, the 31st of February).
        let reference =
            NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date").and_hms_opt(0, 0, 0).expect("midnight");
        if cron.find_next_occurrence(&reference.and_utc(), false).is_err() {
            return Err(format!("cron `{text}` never matches a real date (e.g. the 31st of February)"));
        }
        Ok(Schedule::Cron(Box::new(cron)))
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
            Schedule::Cron(c) => c
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .and_then(|t| in_range(t.with_timezone(&Utc)).ok()),
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
                    t = checked_add(t, Duration::milliseconds(step.saturating_mul(i64::from(k)))).ok()?;
                }
                for _ in 0..1_000_000 {
                    if repeats.is_some_and(|r| n >= r) {
                        return None;
                    }
                    if t > after {
                        return Some(t);
                    }
                    // Past year 9999 the schedule has ended.
                    t = every.add_to(t, tz).ok()?;
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
    fn business_days_skip_the_japanese_holidays_and_keep_the_time() {
        let span = parse_span("3bd").unwrap();
        assert_eq!(span.business_days, 3);
        // Thu 2026-04-30 10:00 JST + 3 business days: 5/1, then 5/7, 5/8 (GW off).
        let t = Utc.with_ymd_and_hms(2026, 4, 30, 1, 0, 0).unwrap();
        let due = span.add_to(t, DEFAULT_ZONE).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 5, 8, 1, 0, 0).unwrap());
        assert!(parse_span("10001bd").is_err());
        assert!(parse_span("0bd").unwrap().is_zero());
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

    /// Finding 4 of issue 10: `99999999999d` validated and ended the server when a
    /// token reached it; `P999999999Y` overflowed u32 months and fired at once.
    #[test]
    fn spans_longer_than_a_century_are_refused() {
        for text in ["99999999999d", "P999999999Y", "P4294967295D", "PT99999999999H", "P101Y", "36526d", "P1200M1D"] {
            let err = parse_span(text).unwrap_err();
            assert!(err.contains("longer than 100 years"), "{text}: {err}");
        }
        let p = parse_span("P100Y").unwrap();
        assert_eq!(p.months, 1200);
        assert_eq!(parse_span("36525d").unwrap(), Span::exact(Duration::days(36_525)));
        assert!(parse_span("PT999999999999999999999S").unwrap_err().contains("longer than 100 years"));
    }

    #[test]
    fn adding_past_year_9999_is_an_error() {
        let span = parse_span("P100Y").unwrap();
        assert!(span.add_to(t("9950-01-01T00:00:00Z"), DEFAULT_ZONE).unwrap_err().contains("0000–9999"));
        let exact = parse_span("36525d").unwrap();
        assert!(exact.add_to(t("9950-01-01T00:00:00Z"), DEFAULT_ZONE).is_err());
        assert_eq!(exact.add_to(t("2000-01-01T00:00:00Z"), DEFAULT_ZONE), Ok(t("2100-01-01T00:00:00Z")));
        assert!(checked_add(t("2026-01-01T00:00:00Z"), Duration::MAX).is_err());
        assert!(checked_add(t("2026-01-01T00:00:00Z"), Duration::MIN).is_err());
    }

    #[test]
    fn instants_outside_years_0000_to_9999_are_refused() {
        for text in ["+10000-01-01", "+99999-01-01T00:00:00", "-0001-12-31"] {
            assert!(parse_instant(text, DEFAULT_ZONE).is_err(), "{text}");
        }
        assert_eq!(parse_instant("9999-12-31T23:59:59Z", DEFAULT_ZONE), Ok(t("9999-12-31T23:59:59Z")));
        assert!(parse_instant("0000-01-01", chrono_tz::UTC).is_ok());
    }

    /// Finding 14: the end of a due date is on the process's zone, not JST.
    #[test]
    fn end_of_day_is_on_the_zone_wall_clock() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(end_of_day(d, DEFAULT_ZONE), Ok(t("2026-12-01T23:59:59+09:00")));
        assert_eq!(end_of_day(d, "Europe/Berlin".parse().unwrap()), Ok(t("2026-12-01T23:59:59+01:00")));
        assert!(end_of_day(NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap(), chrono_tz::UTC).is_err());
    }

    #[test]
    fn a_repeat_after_long_downtime_jumps_in_one_stride() {
        let every = parse_span("1s").unwrap();
        let start = t("2026-01-01T00:00:00Z");
        let next = every.next_after(start, t("2027-01-01T00:00:00.5Z"), DEFAULT_ZONE).unwrap();
        assert_eq!(next, t("2027-01-01T00:00:01Z"));
        assert_eq!(every.next_after(start, start, DEFAULT_ZONE), Ok(t("2026-01-01T00:00:01Z")));
        let monthly = parse_span("P1M").unwrap();
        assert_eq!(monthly.next_after(start, t("2026-03-15T00:00:00Z"), chrono_tz::UTC), Ok(t("2026-04-01T00:00:00Z")));
        assert!(parse_span("P100Y")
            .unwrap()
            .next_after(t("9950-01-01T00:00:00Z"), t("9951-01-01T00:00:00Z"), DEFAULT_ZONE)
            .is_err());
    }

    #[test]
    fn a_cron_that_never_matches_is_refused() {
        let err = Schedule::cron("0 0 31 2 *").unwrap_err();
        assert!(err.contains("never matches"), "{err}");
        assert!(Schedule::cron("0 0 29 2 *").is_ok(), "leap days exist");
        assert!(Schedule::cron("99 0 * * *").is_err());
    }

    #[test]
    fn calendar_days_keep_the_wall_clock_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 is the spring-forward day in New York.
        let before = t("2026-03-07T09:00:00-05:00");
        let next = parse_span("P1D").unwrap().add_to(before, ny);
        assert_eq!(next, Ok(t("2026-03-08T09:00:00-04:00")));
        let exact = parse_span("24h").unwrap().add_to(before, ny);
        assert_eq!(exact, Ok(t("2026-03-08T10:00:00-04:00")));
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

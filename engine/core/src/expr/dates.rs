//! Date helpers for expressions, all checked: a result outside years 0000–9999 or
//! an amount that overflows is an expression error (an incident on that instance),
//! never a panic. `add_days(now, 日数)` with a form value of 100000000 stops there.

use crate::{ambient, calendar, schedule};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rhai::{Engine, EvalAltResult};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Register `add_days`, `add_hours`, `add_minutes`, `date_jst`, `date_in` and the
/// business-calendar helpers (`is_business_day`, `next_business_day`,
/// `add_business_days`, `holiday_name`, `wareki`).
/// Datetimes are RFC 3339 strings (results in UTC `Z`); dates are `YYYY-MM-DD`.
pub(super) fn register(e: &mut Engine) {
    e.register_fn("add_days", |s: &str, n: i64| shift(s, n, 86_400, "days"));
    e.register_fn("add_hours", |s: &str, n: i64| shift(s, n, 3_600, "hours"));
    e.register_fn("add_minutes", |s: &str, n: i64| shift(s, n, 60, "minutes"));
    // Japan has no daylight saving time, so a fixed offset is exact for Asia/Tokyo.
    e.register_fn("date_jst", |s: &str| date_in(s, "Asia/Tokyo"));
    // The calendar date of a datetime on the wall clock of an IANA zone.
    e.register_fn("date_in", |s: &str, zone: &str| date_in(s, zone));
    // The Japanese business calendar ([`crate::calendar`]) with the running
    // process's company days off ([`crate::ambient`]): a datetime counts by its
    // date in Japan.
    e.register_fn("is_business_day", |s: &str| -> Res<bool> {
        Ok(calendar::is_business_day(japan_date(s)?, &ambient::days_off()))
    });
    e.register_fn("next_business_day", |s: &str| -> Res<String> {
        let d = japan_date(s)?;
        let next = calendar::next_business_day(d, &ambient::days_off())
            .ok_or_else(|| format!("no business day after `{s}`"))?;
        Ok(next.format("%Y-%m-%d").to_string())
    });
    e.register_fn("add_business_days", |s: &str, n: i64| -> Res<String> {
        let d = calendar::add_business_days(japan_date(s)?, n, &ambient::days_off())?;
        Ok(d.format("%Y-%m-%d").to_string())
    });
    e.register_fn("holiday_name", |s: &str| -> Res<rhai::Dynamic> {
        Ok(calendar::holiday(japan_date(s)?).map_or(rhai::Dynamic::UNIT, |n| n.into()))
    });
    e.register_fn("wareki", |s: &str| -> Res<String> {
        calendar::wareki(japan_date(s)?).ok_or_else(|| format!("`{s}` is before the 明治 era").into())
    });
}

/// The date of `s`: a date as written, a datetime by its date in Japan.
fn japan_date(s: &str) -> Res<NaiveDate> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d);
    }
    let dt = DateTime::parse_from_rfc3339(s)
        .map_err(|_| format!("`{s}` is neither a date (YYYY-MM-DD) nor a datetime (RFC 3339)"))?;
    Ok(dt.with_timezone(&chrono_tz::Asia::Tokyo).date_naive())
}

/// `s` moved by `n` units of `unit_secs` seconds.
fn shift(s: &str, n: i64, unit_secs: i64, unit: &str) -> Res<String> {
    let by = n
        .checked_mul(unit_secs)
        .and_then(Duration::try_seconds)
        .ok_or_else(|| format!("{n} {unit} is out of range for a date"))?;
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        let out = schedule::checked_add(dt.with_timezone(&Utc), by).map_err(|_| too_far(s, n, unit))?;
        return Ok(super::format_datetime(out));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let out =
            d.checked_add_signed(by).filter(|d| (0..=9999).contains(&d.year())).ok_or_else(|| too_far(s, n, unit))?;
        return Ok(out.format("%Y-%m-%d").to_string());
    }
    Err(format!("`{s}` is neither a date (YYYY-MM-DD) nor a datetime (RFC 3339)").into())
}

fn too_far(s: &str, n: i64, unit: &str) -> Box<EvalAltResult> {
    format!("`{s}` moved by {n} {unit} is outside years 0000–9999").into()
}

fn date_in(s: &str, zone: &str) -> Res<String> {
    let dt = DateTime::parse_from_rfc3339(s).map_err(|err| format!("`{s}` is not a datetime: {err}"))?;
    let tz = schedule::parse_zone(zone)?;
    Ok(dt.with_timezone(&tz).format("%Y-%m-%d").to_string())
}

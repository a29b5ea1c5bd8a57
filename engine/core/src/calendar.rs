//! The Japanese business calendar: national holidays by the rules of the Act on
//! National Holidays (国民の祝日に関する法律), substitute holidays (振替休日),
//! citizens' holidays (国民の休日), weekends, and Japanese era dates (和暦).
//!
//! Computed, not looked up: a date in any year 1980–2099 (the range of the
//! equinox formula) gets the rules in force that year, including the one-off
//! moves of 2019–2021 (the enthronement, the Tokyo Olympics). Outside that range
//! only weekends count as days off (documented; no business process reaches it).
//! Pure: no clock, no files.

use chrono::{Datelike, NaiveDate, Weekday};

/// Years whose holidays are computed; outside, only weekends are days off.
pub const YEARS: std::ops::RangeInclusive<i32> = 1980..=2099;

/// Most business days `add_business_days` moves (about 40 years).
pub const MAX_BUSINESS_DAYS: i64 = 10_000;

/// The name of the national holiday on `d`, if it is one (substitute and
/// citizens' holidays included).
pub fn holiday(d: NaiveDate) -> Option<&'static str> {
    if !YEARS.contains(&d.year()) {
        return None;
    }
    if let Some(name) = fixed_or_moving(d) {
        return Some(name);
    }
    // 振替休日: a holiday on a Sunday moves the rest day to the next day that is
    // not a holiday (since 2007; before, only to the Monday).
    let mut back = d;
    loop {
        back = back.pred_opt()?;
        match fixed_or_moving(back) {
            Some(_) if back.weekday() == Weekday::Sun => return Some("振替休日"),
            Some(_) if d.year() >= 2007 => continue,
            _ => break,
        }
    }
    // 国民の休日: a weekday between two holidays.
    if d.weekday() != Weekday::Sun {
        let (before, after) = (d.pred_opt()?, d.succ_opt()?);
        if fixed_or_moving(before).is_some() && fixed_or_moving(after).is_some() {
            return Some("国民の休日");
        }
    }
    None
}

/// The holidays the law names for a date (no substitute or citizens' holiday).
fn fixed_or_moving(d: NaiveDate) -> Option<&'static str> {
    let (y, m, day) = (d.year(), d.month(), d.day());
    let nth_monday = |n: u32| d.weekday() == Weekday::Mon && (day - 1) / 7 + 1 == n;
    Some(match (m, day) {
        (1, 1) => "元日",
        (1, _) if y >= 2000 && nth_monday(2) => "成人の日",
        (1, 15) if y < 2000 => "成人の日",
        (2, 11) => "建国記念の日",
        (2, 23) if y >= 2020 => "天皇誕生日",
        (3, _) if day == equinox(y, 20.8431) => "春分の日",
        (4, 29) if y >= 2007 => "昭和の日",
        (4, 29) => "みどりの日",
        (5, 3) => "憲法記念日",
        (5, 4) if y >= 2007 => "みどりの日",
        (5, 5) => "こどもの日",
        (7, 23) if y == 2020 => "海の日",
        (7, 22) if y == 2021 => "海の日",
        (7, _) if y >= 2003 && y != 2020 && y != 2021 && nth_monday(3) => "海の日",
        (7, 20) if (1996..2003).contains(&y) => "海の日",
        (7, 24) if y == 2020 => "スポーツの日",
        (7, 23) if y == 2021 => "スポーツの日",
        (8, 10) if y == 2020 => "山の日",
        (8, 8) if y == 2021 => "山の日",
        (8, 11) if y >= 2016 && y != 2020 && y != 2021 => "山の日",
        (9, _) if y >= 2003 && nth_monday(3) => "敬老の日",
        (9, 15) if y < 2003 => "敬老の日",
        (9, _) if day == equinox(y, 23.2488) => "秋分の日",
        (10, _) if y >= 2022 && nth_monday(2) => "スポーツの日",
        (10, _) if (2000..2020).contains(&y) && nth_monday(2) => "体育の日",
        (10, 10) if y < 2000 => "体育の日",
        (11, 3) => "文化の日",
        (11, 23) => "勤労感謝の日",
        (12, 23) if (1989..2019).contains(&y) => "天皇誕生日",
        // The enthronement of 2019 (a one-off law).
        (5, 1) if y == 2019 => "天皇の即位の日",
        (10, 22) if y == 2019 => "即位礼正殿の儀の行われる日",
        _ => return None,
    })
}

/// Day of March (`base` 20.8431) or September (23.2488) of the equinox holiday, by
/// the formula the National Astronomical Observatory's announcements follow for
/// 1980–2099.
fn equinox(y: i32, base: f64) -> u32 {
    let n = f64::from(y - 1980);
    (base + 0.242194 * n - (n / 4.0).floor()).floor() as u32
}

/// A day on which offices work: not Saturday or Sunday, not a national holiday,
/// not one of the company's own days off (`extra`).
pub fn is_business_day(d: NaiveDate, extra: &[NaiveDate]) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && holiday(d).is_none() && !extra.contains(&d)
}

/// `d` itself if it is a business day, else the next one; `None` past year 9999.
pub fn next_business_day(d: NaiveDate, extra: &[NaiveDate]) -> Option<NaiveDate> {
    let mut at = d;
    // At most a few weeks of days off in a row (年末年始 plus a holiday run).
    for _ in 0..=366 {
        if is_business_day(at, extra) {
            return Some(at);
        }
        at = at.succ_opt()?;
    }
    None
}

/// The date `n` business days after `d` (before it when `n` is negative): day by
/// day, counting only business days. `d` itself is not counted; 0 gives `d`.
pub fn add_business_days(d: NaiveDate, n: i64, extra: &[NaiveDate]) -> Result<NaiveDate, String> {
    if n.abs() > MAX_BUSINESS_DAYS {
        return Err(format!("{n} business days is more than the {MAX_BUSINESS_DAYS} a step may count"));
    }
    let mut at = d;
    let mut left = n.abs();
    while left > 0 {
        at = if n > 0 { at.succ_opt() } else { at.pred_opt() }
            .filter(|d| (0..=9999).contains(&d.year()))
            .ok_or_else(|| format!("{d} moved by {n} business days is outside years 0000–9999"))?;
        if is_business_day(at, extra) {
            left -= 1;
        }
    }
    Ok(at)
}

/// `d` in the Japanese era calendar, as a form shows it: `令和8年12月1日` (the
/// first year is 元年: `令和元年5月1日`). Eras from 明治 (1868-01-25 by the
/// Gregorian calendar); an earlier date is `None`.
pub fn wareki(d: NaiveDate) -> Option<String> {
    const ERAS: &[(&str, i32, u32, u32)] = &[
        ("令和", 2019, 5, 1),
        ("平成", 1989, 1, 8),
        ("昭和", 1926, 12, 25),
        ("大正", 1912, 7, 30),
        ("明治", 1868, 1, 25),
    ];
    let (name, start_year, ..) =
        ERAS.iter().find(|(_, y, m, day)| NaiveDate::from_ymd_opt(*y, *m, *day).is_some_and(|s| d >= s))?;
    let year = d.year() - start_year + 1;
    let year = if year == 1 { "元".to_string() } else { year.to_string() };
    Some(format!("{name}{year}年{}月{}日", d.month(), d.day()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// Every holiday of a year, as `MM-DD`.
    fn holidays_of(y: i32) -> Vec<String> {
        let mut d = NaiveDate::from_ymd_opt(y, 1, 1).unwrap();
        let mut out = Vec::new();
        while d.year() == y {
            if holiday(d).is_some() {
                out.push(d.format("%m-%d").to_string());
            }
            d = d.succ_opt().unwrap();
        }
        out
    }

    /// The Cabinet Office's lists (内閣府「国民の祝日について」), substitute and
    /// citizens' holidays included.
    #[test]
    fn holidays_match_the_cabinet_office_lists() {
        let lists: &[(i32, &str)] = &[
            (2020, "01-01 01-13 02-11 02-23 02-24 03-20 04-29 05-03 05-04 05-05 05-06 07-23 07-24 08-10 09-21 09-22 11-03 11-23"),
            (2021, "01-01 01-11 02-11 02-23 03-20 04-29 05-03 05-04 05-05 07-22 07-23 08-08 08-09 09-20 09-23 11-03 11-23"),
            (2022, "01-01 01-10 02-11 02-23 03-21 04-29 05-03 05-04 05-05 07-18 08-11 09-19 09-23 10-10 11-03 11-23"),
            (2023, "01-01 01-02 01-09 02-11 02-23 03-21 04-29 05-03 05-04 05-05 07-17 08-11 09-18 09-23 10-09 11-03 11-23"),
            (2024, "01-01 01-08 02-11 02-12 02-23 03-20 04-29 05-03 05-04 05-05 05-06 07-15 08-11 08-12 09-16 09-22 09-23 10-14 11-03 11-04 11-23"),
            (2025, "01-01 01-13 02-11 02-23 02-24 03-20 04-29 05-03 05-04 05-05 05-06 07-21 08-11 09-15 09-23 10-13 11-03 11-23 11-24"),
            (2026, "01-01 01-12 02-11 02-23 03-20 04-29 05-03 05-04 05-05 05-06 07-20 08-11 09-21 09-22 09-23 10-12 11-03 11-23"),
            (2027, "01-01 01-11 02-11 02-23 03-21 03-22 04-29 05-03 05-04 05-05 07-19 08-11 09-20 09-23 10-11 11-03 11-23"),
        ];
        for (y, want) in lists {
            assert_eq!(holidays_of(*y).join(" "), *want, "holidays of {y}");
        }
    }

    #[test]
    fn names_and_the_2019_enthronement() {
        assert_eq!(holiday(date("2026-09-22")), Some("国民の休日"));
        assert_eq!(holiday(date("2026-05-06")), Some("振替休日"));
        assert_eq!(holiday(date("2026-01-12")), Some("成人の日"));
        assert_eq!(holiday(date("2019-05-01")), Some("天皇の即位の日"));
        assert_eq!(holiday(date("2019-04-30")), Some("国民の休日"));
        assert_eq!(holiday(date("2019-05-02")), Some("国民の休日"));
        assert_eq!(holiday(date("2026-12-01")), None);
        assert_eq!(holiday(date("2150-01-01")), None, "outside the computed years");
    }

    #[test]
    fn business_days_skip_weekends_holidays_and_company_days_off() {
        // Golden Week 2026: Wed 4/29 holiday, 5/2–5/6 off.
        assert_eq!(add_business_days(date("2026-04-30"), 1, &[]).unwrap(), date("2026-05-01"));
        assert_eq!(add_business_days(date("2026-05-01"), 1, &[]).unwrap(), date("2026-05-07"));
        assert_eq!(add_business_days(date("2026-05-07"), -1, &[]).unwrap(), date("2026-05-01"));
        assert_eq!(add_business_days(date("2026-05-03"), 0, &[]).unwrap(), date("2026-05-03"));
        // 年末年始 as company days off.
        let off: Vec<NaiveDate> =
            ["2026-12-29", "2026-12-30", "2026-12-31", "2027-01-02", "2027-01-03"].map(date).to_vec();
        assert_eq!(add_business_days(date("2026-12-28"), 1, &off).unwrap(), date("2027-01-04"));
        assert_eq!(next_business_day(date("2026-12-29"), &off), Some(date("2027-01-04")));
        assert!(is_business_day(date("2026-12-01"), &[]));
        assert!(!is_business_day(date("2026-11-23"), &[]));
        assert!(add_business_days(date("2026-12-01"), MAX_BUSINESS_DAYS + 1, &[]).is_err());
        assert!(add_business_days(date("9999-12-30"), 5, &[]).is_err());
    }

    #[test]
    fn era_dates() {
        assert_eq!(wareki(date("2026-12-01")).as_deref(), Some("令和8年12月1日"));
        assert_eq!(wareki(date("2019-05-01")).as_deref(), Some("令和元年5月1日"));
        assert_eq!(wareki(date("2019-04-30")).as_deref(), Some("平成31年4月30日"));
        assert_eq!(wareki(date("1989-01-07")).as_deref(), Some("昭和64年1月7日"));
        assert_eq!(wareki(date("1800-01-01")), None);
    }
}

//! kintone's query functions (`TODAY()`, `FROM_TODAY(-7, DAYS)`, `THIS_MONTH()`,
//! `LOGINUSER()` ...): checked when a query is parsed (name, arguments), passed to
//! kintone as written, and evaluated by the emulator.
//!
//! A date function stands for a span of time in the user's zone (`TODAY()` is the
//! whole day): `=` means within it, `<` before it, `>` after it, `<=`/`>=` the
//! same with the span included, as kintone does.

use super::query::QueryError;
use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, TimeZone, Utc};

/// A function call in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Func {
    /// Upper case, as kintone writes it.
    pub name: String,
    pub args: Vec<String>,
}

/// What the emulator evaluates functions with.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: DateTime<Utc>,
    /// The user's zone (kintone's per-user time zone; JST by default).
    pub offset: FixedOffset,
    /// Login name of the caller (`LOGINUSER()`); `None` for an API token.
    pub login: Option<String>,
}

impl Context {
    pub fn jst(now: DateTime<Utc>, login: Option<String>) -> Context {
        Context { now, offset: FixedOffset::east_opt(9 * 3600).expect("+09:00"), login }
    }
}

/// What a function stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A span of time [start, end).
    Span(DateTime<Utc>, DateTime<Utc>),
    /// A user or organization code.
    Code(Option<String>),
}

const NO_ARGS: &[&str] = &[
    "NOW",
    "TODAY",
    "YESTERDAY",
    "TOMORROW",
    "LAST_WEEK",
    "NEXT_WEEK",
    "THIS_YEAR",
    "LAST_YEAR",
    "NEXT_YEAR",
    "LOGINUSER",
    "PRIMARY_ORGANIZATION",
];
const UNITS: &[&str] = &["DAYS", "WEEKS", "MONTHS", "YEARS"];
const DAYS: &[&str] = &["SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"];

fn bad(msg: String) -> QueryError {
    QueryError { code: "CB_VA01", message: msg }
}

/// Check a call as kintone would: a known function with the arguments it takes.
pub fn check(name: &str, args: &[String]) -> Result<Func, QueryError> {
    let upper = name.to_ascii_uppercase();
    let n = args.len();
    let ok = match upper.as_str() {
        f if NO_ARGS.contains(&f) => n == 0,
        "FROM_TODAY" => {
            n == 2
                && args[0].trim().parse::<i64>().is_ok_and(|d| d.abs() <= 100_000)
                && UNITS.contains(&args[1].as_str())
        }
        "THIS_WEEK" => n == 0 || (n == 1 && DAYS.contains(&args[0].as_str())),
        "THIS_MONTH" | "LAST_MONTH" | "NEXT_MONTH" => {
            n == 0 || (n == 1 && (args[0] == "LAST" || args[0].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))))
        }
        _ => {
            return Err(bad(format!(
                "unknown function `{name}()`: kintone has TODAY(), FROM_TODAY(n, DAYS), THIS_MONTH(), LOGINUSER() ..."
            )))
        }
    };
    if !ok {
        let hint = match upper.as_str() {
            "FROM_TODAY" => "FROM_TODAY(<whole number>, DAYS|WEEKS|MONTHS|YEARS)",
            "THIS_WEEK" => "THIS_WEEK() or THIS_WEEK(MONDAY) ...",
            "THIS_MONTH" | "LAST_MONTH" | "NEXT_MONTH" => "THIS_MONTH(), THIS_MONTH(1..31) or THIS_MONTH(LAST)",
            _ => "no arguments",
        };
        return Err(bad(format!("wrong arguments for `{upper}()` ({}): write {hint}", args.join(", "))));
    }
    Ok(Func { name: upper, args: args.to_vec() })
}

impl Func {
    /// kintone's spelling, for a query sent on.
    pub fn text(&self) -> String {
        format!("{}({})", self.name, self.args.join(", "))
    }

    /// What the function stands for in `cx`.
    pub fn resolve(&self, cx: &Context) -> Resolved {
        let local = cx.now.with_timezone(&cx.offset);
        let today = local.date_naive();
        let at = |d: NaiveDate| -> DateTime<Utc> {
            let midnight = d.and_hms_opt(0, 0, 0).expect("midnight");
            cx.offset.from_local_datetime(&midnight).single().map(|t| t.with_timezone(&Utc)).unwrap_or(cx.now)
        };
        let days = |from: NaiveDate, n: i64| Resolved::Span(at(from), at(from + Duration::days(n)));
        let month_start = |d: NaiveDate, shift: i32| {
            let first = d.with_day(1).expect("day 1");
            if shift >= 0 {
                first.checked_add_months(Months::new(shift as u32)).unwrap_or(first)
            } else {
                first.checked_sub_months(Months::new((-shift) as u32)).unwrap_or(first)
            }
        };
        let month = |shift: i32| {
            let start = month_start(today, shift);
            let next = month_start(start, 1);
            match self.args.first().map(String::as_str) {
                None => Resolved::Span(at(start), at(next)),
                Some("LAST") => days(next - Duration::days(1), 1),
                Some(d) => match d.parse::<u32>().ok().and_then(|d| start.with_day(d)) {
                    Some(day) => days(day, 1),
                    None => Resolved::Span(at(next), at(next)), // 31st of a short month: nothing
                },
            }
        };
        let week_start = today - Duration::days(today.weekday().num_days_from_sunday() as i64);
        let year = |shift: i32| {
            let y = today.year() + shift;
            let start = NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or(today);
            let next = NaiveDate::from_ymd_opt(y + 1, 1, 1).unwrap_or(today);
            Resolved::Span(at(start), at(next))
        };
        match self.name.as_str() {
            "NOW" => {
                let minute = cx.now - Duration::seconds(cx.now.timestamp().rem_euclid(60));
                let minute = minute - Duration::nanoseconds(minute.timestamp_subsec_nanos() as i64);
                Resolved::Span(minute, minute + Duration::minutes(1))
            }
            "TODAY" => days(today, 1),
            "YESTERDAY" => days(today - Duration::days(1), 1),
            "TOMORROW" => days(today + Duration::days(1), 1),
            "FROM_TODAY" => {
                let n: i64 = self.args[0].trim().parse().unwrap_or(0);
                let d = match self.args[1].as_str() {
                    "DAYS" => today.checked_add_signed(Duration::days(n)),
                    "WEEKS" => today.checked_add_signed(Duration::weeks(n)),
                    "MONTHS" if n >= 0 => today.checked_add_months(Months::new(n as u32)),
                    "MONTHS" => today.checked_sub_months(Months::new(n.unsigned_abs() as u32)),
                    _ if n >= 0 => today.checked_add_months(Months::new(12 * n as u32)),
                    _ => today.checked_sub_months(Months::new(12 * n.unsigned_abs() as u32)),
                };
                days(d.unwrap_or(today), 1)
            }
            "THIS_WEEK" => match self.args.first() {
                None => days(week_start, 7),
                Some(d) => {
                    let ix = DAYS.iter().position(|x| x == d).unwrap_or(0) as i64;
                    days(week_start + Duration::days(ix), 1)
                }
            },
            "LAST_WEEK" => days(week_start - Duration::days(7), 7),
            "NEXT_WEEK" => days(week_start + Duration::days(7), 7),
            "THIS_MONTH" => month(0),
            "LAST_MONTH" => month(-1),
            "NEXT_MONTH" => month(1),
            "THIS_YEAR" => year(0),
            "LAST_YEAR" => year(-1),
            "NEXT_YEAR" => year(1),
            "LOGINUSER" => Resolved::Code(cx.login.clone()),
            _ => Resolved::Code(None), // PRIMARY_ORGANIZATION: the emulator has no organizations
        }
    }
}

/// A stored date, time or datetime value as an instant (dates at midnight in `cx`'s zone).
pub fn instant(v: &str, cx: &Context) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%z") {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
    cx.offset.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::super::query::{parse, Cond};
    use super::*;
    use serde_json::{json, Value};

    fn cx() -> Context {
        // Wednesday 2026-11-25 10:30 JST.
        Context::jst("2026-11-25T01:30:00Z".parse().unwrap(), Some("sato".into()))
    }

    fn hit(q: &str, ty: &str, v: Value) -> bool {
        let get = |_: &str| Some((ty.to_string(), v.clone()));
        let c: Cond = parse(q).unwrap().cond.unwrap();
        c.matches_in(&get, &cx())
    }

    #[test]
    fn date_functions_are_spans_in_the_users_zone() {
        // 2026-11-24T15:00Z is midnight of the 25th in JST: today.
        assert!(hit("d = TODAY()", "DATETIME", json!("2026-11-24T15:00:00Z")));
        assert!(!hit("d = TODAY()", "DATETIME", json!("2026-11-24T14:59:00Z")));
        assert!(hit("d < TODAY()", "DATETIME", json!("2026-11-24T14:59:00Z")));
        assert!(hit("d = YESTERDAY()", "DATE", json!("2026-11-24")));
        assert!(hit("d > TODAY()", "DATE", json!("2026-11-26")));
        assert!(hit("d <= TODAY()", "DATE", json!("2026-11-25")));
        assert!(hit("d = FROM_TODAY(-7, DAYS)", "DATE", json!("2026-11-18")));
        assert!(hit("d = FROM_TODAY(1, MONTHS)", "DATE", json!("2026-12-25")));
        assert!(hit("d = THIS_MONTH()", "DATE", json!("2026-11-01")));
        assert!(!hit("d = THIS_MONTH()", "DATE", json!("2026-12-01")));
        assert!(hit("d = THIS_MONTH(LAST)", "DATE", json!("2026-11-30")));
        assert!(hit("d = LAST_MONTH()", "DATE", json!("2026-10-31")));
        assert!(hit("d = THIS_WEEK()", "DATE", json!("2026-11-22")), "weeks start on Sunday");
        assert!(hit("d = THIS_WEEK(FRIDAY)", "DATE", json!("2026-11-27")));
        assert!(hit("d = THIS_YEAR()", "DATE", json!("2026-01-01")));
        assert!(hit("d in (TODAY(), TOMORROW())", "DATE", json!("2026-11-26")));
        assert!(hit("d = NOW()", "DATETIME", json!("2026-11-25T01:30:00Z")));
    }

    #[test]
    fn loginuser_is_the_caller() {
        assert!(hit("作成者 in (LOGINUSER())", "CREATOR", json!({"code": "sato", "name": "佐藤"})));
        assert!(!hit("作成者 in (LOGINUSER())", "CREATOR", json!({"code": "ito", "name": "伊藤"})));
        assert!(hit("作成者 not in (LOGINUSER())", "CREATOR", json!({"code": "ito", "name": "伊藤"})));
    }

    #[test]
    fn calls_are_checked_and_kept_as_kintone_writes_them() {
        for bad in [
            "d = TODAY(1)",
            "d = FROM_TODAY(1)",
            "d = FROM_TODAY(x, DAYS)",
            "d = FROM_TODAY(1, HOURS)",
            "d = THIS_MONTH(32)",
            "d = THIS_WEEK(FUNDAY)",
            "d = SOMEDAY()",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, "CB_VA01", "{bad}");
        }
        let q = parse("d = from_today(-7, DAYS)").unwrap();
        let Some(Cond::Cmp { value: crate::kintone::query::Operand::Func(f), .. }) = q.cond else { panic!() };
        assert_eq!(f.text(), "FROM_TODAY(-7, DAYS)");
    }
}

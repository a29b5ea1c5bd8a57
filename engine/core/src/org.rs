//! The organisation: departments in a tree, positions with a rank, each user's
//! posts (main and concurrent, 兼務) with effective dates (異動), and the
//! company's days off (年末年始...) per calendar.
//!
//! Read from the org file (YAML) by [`Org::parse`], validated on load with
//! line:col diagnostics (a parent cycle, an unknown department, position or
//! user, two main posts at once), and queried by the expression helpers
//! (`manager_of`, `position_in`, `users_in`, `department_of`) through
//! [`crate::ambient`]. Pure: the server reads the file and hands the text over.
//!
//! ```yaml
//! positions: { 課長: 1, 部長: 2, 役員: 3 }     # rank: higher is more senior
//! departments:
//!   本社: {}
//!   営業部: { parent: 本社 }
//!   営業一課: { parent: 営業部 }
//! users:
//!   sato: { department: 営業一課 }
//!   tanaka:
//!     - { department: 営業一課, position: 課長, until: 2027-04-01 }
//!     - { department: 営業部, position: 部長, from: 2027-04-01 }   # 異動
//!     - { department: 法務部, position: 課長, concurrent: true }    # 兼務
//! calendars:
//!   default: { days_off: ["12-29..01-03"] }        # every year
//!   工場: { days_off: [2026-08-13..2026-08-16], processes: [shipping] }
//! ```

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::tree::{self, SourceMap};
use chrono::{Datelike, NaiveDate};
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};

/// Most departments an org file may declare.
pub const MAX_DEPARTMENTS: usize = 10_000;
/// Most users an org file may place.
pub const MAX_USERS: usize = 20_000;
/// Most positions an org file may declare.
pub const MAX_POSITIONS: usize = 100;
/// Most posts (main, concurrent, past and future) one user may hold in the file.
pub const MAX_POSTS_PER_USER: usize = 32;
/// Deepest department tree (levels from the root).
pub const MAX_TREE_DEPTH: usize = 64;
/// Longest department, position or user name.
pub const MAX_NAME_CHARS: usize = 100;
/// Most days off one calendar may expand to (yearly rules count once per year
/// of [`YEARLY_YEARS`]).
pub const MAX_DAYS_OFF: usize = 5_000;
/// Longest range of days off one entry may give.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Years a yearly day off (`12-29..01-03`) is expanded for.
pub const YEARLY_YEARS: std::ops::RangeInclusive<i32> = 2000..=2099;

/// The organisation as loaded: validated, ready to query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Org {
    departments: IndexMap<String, Option<String>>,
    positions: IndexMap<String, u32>,
    users: IndexMap<String, Vec<Post>>,
    calendars: IndexMap<String, Calendar>,
}

/// A user's post: a department, maybe a position, from/until dates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    pub department: String,
    #[serde(default)]
    pub position: Option<String>,
    /// 兼務: a second post beside the main one.
    #[serde(default)]
    pub concurrent: bool,
    /// First day in effect (inclusive); absent: always was.
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// First day no longer in effect (exclusive); absent: still is.
    #[serde(default)]
    pub until: Option<NaiveDate>,
}

impl Post {
    fn in_effect(&self, on: NaiveDate) -> bool {
        self.from.is_none_or(|f| f <= on) && self.until.is_none_or(|u| on < u)
    }
}

/// Company days off of one calendar and the processes that use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    /// Sorted; shared with every step that uses the calendar (no copy per event).
    pub days_off: std::sync::Arc<[NaiveDate]>,
    pub processes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgFile {
    #[serde(default)]
    positions: IndexMap<String, u32>,
    #[serde(default)]
    departments: IndexMap<String, DeptDef>,
    #[serde(default)]
    users: IndexMap<String, serde_yaml::Value>,
    #[serde(default)]
    calendars: IndexMap<String, CalendarDef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeptDef {
    #[serde(default)]
    parent: Option<String>,
    /// Display name (the key is the id processes use).
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarDef {
    #[serde(default)]
    days_off: Vec<String>,
    #[serde(default)]
    processes: Vec<String>,
}

impl Org {
    /// Parse and validate the org file `text` (`file` names it in diagnostics).
    /// `known_user` says whether a user id exists (the users file); `None` skips
    /// that check.
    pub fn parse(file: &str, text: &str, known_user: Option<&dyn Fn(&str) -> bool>) -> Result<Org, Diagnostics> {
        let text = crate::load::input::strip_bom(text);
        let map = tree::parse(text).map_err(|d| d.finish(file))?;
        let def: OrgFile = serde_yaml::from_str(text).map_err(|e| {
            let mut d = Diagnostics::default();
            d.push(crate::load::serde_diagnostic(&e));
            d.finish(file)
        })?;
        let mut diags = Diagnostics::default();
        let org = check(def, &map, known_user, &mut diags);
        if diags.has_errors() {
            return Err(diags.finish(file));
        }
        Ok(org)
    }

    pub fn is_empty(&self) -> bool {
        self.departments.is_empty() && self.users.is_empty() && self.calendars.is_empty()
    }

    pub fn has_department(&self, d: &str) -> bool {
        self.departments.contains_key(d)
    }

    /// Counts for logs: departments, positions, users.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.departments.len(), self.positions.len(), self.users.len())
    }

    fn posts_on<'a>(&'a self, user: &str, on: NaiveDate) -> impl Iterator<Item = &'a Post> + 'a {
        self.users.get(user).into_iter().flatten().filter(move |p| p.in_effect(on))
    }

    /// The department of the user's main post on `on`.
    pub fn department_of(&self, user: &str, on: NaiveDate) -> Option<&str> {
        self.posts_on(user, on).find(|p| !p.concurrent).map(|p| p.department.as_str())
    }

    fn rank(&self, position: Option<&str>) -> u32 {
        position.and_then(|p| self.positions.get(p).copied()).unwrap_or(0)
    }

    /// The department and its ancestors, nearest first.
    fn up_from<'a>(&'a self, dept: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut at = Some(dept);
        std::iter::from_fn(move || {
            let here = at?;
            at = self.departments.get(here).and_then(|p| p.as_deref());
            Some(here)
        })
        .take(MAX_TREE_DEPTH)
    }

    /// Users holding `position` in `dept` itself on `on` (concurrent posts too), in
    /// file order.
    pub fn holders(&self, dept: &str, position: &str, on: NaiveDate) -> Vec<&str> {
        self.users
            .iter()
            .filter(|(u, _)| {
                self.posts_on(u, on).any(|p| p.department == dept && p.position.as_deref() == Some(position))
            })
            .map(|(u, _)| u.as_str())
            .collect()
    }

    /// The first holder of `position` in `dept`, walking up the tree past vacant
    /// departments; `None` when nobody up to the root holds it.
    pub fn position_in(&self, dept: &str, position: &str, on: NaiveDate) -> Option<&str> {
        self.up_from(dept).find_map(|d| self.holders(d, position, on).first().copied())
    }

    /// The user's manager on `on`: in the user's main department, then up the tree,
    /// the holder of the most junior position ranked above the user's own (a
    /// vacant level is skipped); never the user themselves.
    pub fn manager_of(&self, user: &str, on: NaiveDate) -> Option<&str> {
        let main = self.posts_on(user, on).find(|p| !p.concurrent)?;
        let own = self.rank(main.position.as_deref());
        for dept in self.up_from(&main.department) {
            let best = self
                .users
                .iter()
                .filter(|(u, _)| u.as_str() != user)
                .filter_map(|(u, _)| {
                    let r = self
                        .posts_on(u, on)
                        .filter(|p| p.department == dept)
                        .map(|p| self.rank(p.position.as_deref()))
                        .filter(|r| *r > own)
                        .min()?;
                    Some((r, u.as_str()))
                })
                .min_by_key(|(r, _)| *r);
            if let Some((_, u)) = best {
                return Some(u);
            }
        }
        None
    }

    /// Everyone with a post (main or concurrent) in `dept` itself on `on`.
    pub fn users_in(&self, dept: &str, on: NaiveDate) -> Vec<&str> {
        self.users
            .iter()
            .filter(|(u, _)| self.posts_on(u, on).any(|p| p.department == dept))
            .map(|(u, _)| u.as_str())
            .collect()
    }

    /// The company days off of `process`: its calendar's (`processes:`), else the
    /// `default` calendar's, else none.
    pub fn days_off_for(&self, process: &str) -> std::sync::Arc<[NaiveDate]> {
        let own = self.calendars.values().find(|c| c.processes.iter().any(|p| p == process));
        own.or_else(|| self.calendars.get("default")).map(|c| c.days_off.clone()).unwrap_or_default()
    }
}

/// The group a candidate user is offered a task through: a task offered to
/// candidates (`candidates:`) lists one `user:<id>` group per candidate, and the
/// server counts every user a member of their own, so inboxes, claims and
/// visibility work as for lane groups. Group names starting `user:` are reserved.
pub fn candidate_group(user: &str) -> String {
    format!("user:{user}")
}

fn too_long(s: &str) -> bool {
    s.chars().count() > MAX_NAME_CHARS || s.trim().is_empty()
}

fn check(def: OrgFile, map: &SourceMap, known_user: Option<&dyn Fn(&str) -> bool>, diags: &mut Diagnostics) -> Org {
    let mut err = |code: &'static str, loc: Loc, msg: String, hint: String| {
        diags.push(Diagnostic::error(code, loc, msg).with_hint(hint));
    };
    for (what, n, max) in [
        ("departments", def.departments.len(), MAX_DEPARTMENTS),
        ("users", def.users.len(), MAX_USERS),
        ("positions", def.positions.len(), MAX_POSITIONS),
    ] {
        if n > max {
            err(
                "too-many",
                map.key_loc(&[what]),
                format!("{n} {what}; an org file may have at most {max}"),
                "split the organisation or ask for a larger limit".into(),
            );
        }
    }
    for (kind, names) in [
        ("departments", def.departments.keys().collect::<Vec<_>>()),
        ("positions", def.positions.keys().collect()),
        ("users", def.users.keys().collect()),
    ] {
        for n in names.into_iter().filter(|n| too_long(n)) {
            err(
                "bad-name",
                map.key_loc(&[kind, n]),
                format!("`{n}` is blank or longer than {MAX_NAME_CHARS} characters"),
                "use a shorter name".into(),
            );
        }
    }
    let dept_names = || def.departments.keys().map(String::as_str);
    let unknown_dept = |d: &str| {
        let hint = match crate::diag::suggest(d, dept_names()) {
            Some(s) => format!("did you mean `{s}`? Departments are the keys under `departments:`"),
            None => "declare it under `departments:`".to_string(),
        };
        (format!("unknown department `{d}`"), hint)
    };
    // Parents exist and never loop.
    for (name, d) in &def.departments {
        if let Some(parent) = &d.parent {
            if !def.departments.contains_key(parent) {
                let (m, h) = unknown_dept(parent);
                err("unknown-department", map.loc(&["departments", name, "parent"]), m, h);
                continue;
            }
        }
        let mut seen = vec![name.as_str()];
        let mut at = d.parent.as_deref();
        while let Some(p) = at {
            if p == name {
                err(
                    "department-cycle",
                    map.key_loc(&["departments", name]),
                    format!("department `{name}` is its own ancestor: {} → {name}", seen.join(" → ")),
                    "one department of the loop must have another parent (or none: a root)".into(),
                );
                break;
            }
            if seen.contains(&p) || seen.len() > MAX_TREE_DEPTH {
                if seen.len() > MAX_TREE_DEPTH {
                    err(
                        "too-deep",
                        map.key_loc(&["departments", name]),
                        format!("department `{name}` is more than {MAX_TREE_DEPTH} levels deep"),
                        "flatten the tree".into(),
                    );
                }
                break; // a loop above this one, reported at its own members
            }
            seen.push(p);
            at = def.departments.get(p).and_then(|d| d.parent.as_deref());
        }
    }
    let mut users = IndexMap::new();
    for (user, posts) in def.users {
        let read = match posts {
            serde_yaml::Value::Sequence(_) => serde_yaml::from_value::<Vec<Post>>(posts),
            one => serde_yaml::from_value::<Post>(one).map(|p| vec![p]),
        };
        let posts = match read {
            Ok(p) => p,
            Err(e) => {
                err(
                    "bad-post",
                    map.loc(&["users", &user]),
                    format!("user `{user}`: {e}"),
                    "a post is `{ department: 営業部, position: 課長, concurrent: true, from: 2026-04-01, until: 2027-04-01 }` (only `department` is required); several posts form a list".into(),
                );
                continue;
            }
        };
        if let Some(known) = known_user {
            if !known(&user) {
                err(
                    "unknown-user",
                    map.key_loc(&["users", &user]),
                    format!("user `{user}` is not in the users file"),
                    "add them to the users file first (or fix the id)".into(),
                );
            }
        }
        if posts.len() > MAX_POSTS_PER_USER {
            err(
                "too-many",
                map.key_loc(&["users", &user]),
                format!("user `{user}` has {} posts; at most {MAX_POSTS_PER_USER}", posts.len()),
                "drop posts that ended long ago".into(),
            );
        }
        let single = matches!(map.node(&["users", &user]).map(|n| &n.kind), Some(tree::YKind::Map(_)));
        for (i, post) in posts.iter().enumerate() {
            let idx = i.to_string();
            let path: Vec<&str> = if single { vec!["users", &user] } else { vec!["users", &user, &idx] };
            let at = |key: &str| {
                let mut p = path.clone();
                p.push(key);
                map.loc(&p)
            };
            if !def.departments.contains_key(&post.department) {
                let (m, h) = unknown_dept(&post.department);
                err("unknown-department", at("department"), m, h);
            }
            if let Some(pos) = &post.position {
                if !def.positions.contains_key(pos) {
                    let hint = match crate::diag::suggest(pos, def.positions.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "declare it under `positions:` with its rank".into(),
                    };
                    err("unknown-position", at("position"), format!("unknown position `{pos}`"), hint);
                }
            }
            if let (Some(f), Some(u)) = (post.from, post.until) {
                if f >= u {
                    err(
                        "empty-post",
                        at("until"),
                        format!("post in `{}` ends ({u}) before it starts ({f})", post.department),
                        "`until` is the first day no longer in effect: after `from`".into(),
                    );
                }
            }
        }
        // Two main posts in effect on one day would make "the user's department"
        // ambiguous.
        let mains: Vec<&Post> = posts.iter().filter(|p| !p.concurrent).collect();
        for (i, a) in mains.iter().enumerate() {
            for b in &mains[i + 1..] {
                let overlap = a
                    .from
                    .max(b.from)
                    .is_none_or(|start| [a.until, b.until].into_iter().flatten().min().is_none_or(|end| start < end));
                if overlap {
                    err(
                        "two-main-posts",
                        map.key_loc(&["users", &user]),
                        format!(
                            "user `{user}` has two main posts in effect at once (`{}` and `{}`)",
                            a.department, b.department
                        ),
                        "mark the second `concurrent: true` (兼務), or give the first an `until:` (異動)".into(),
                    );
                }
            }
        }
        users.insert(user, posts);
    }
    let mut calendars = IndexMap::new();
    let mut claimed: HashMap<String, String> = HashMap::new();
    for (name, c) in def.calendars {
        let mut days = BTreeSet::new();
        for (i, entry) in c.days_off.iter().enumerate() {
            match expand(entry) {
                Ok(d) => days.extend(d),
                Err(m) => err(
                    "bad-day-off",
                    map.loc(&["calendars", &name, "days_off", &i.to_string()]),
                    m,
                    "write a date `2026-12-29`, a range `2026-12-29..2027-01-03`, or a yearly range `12-29..01-03`"
                        .into(),
                ),
            }
        }
        if days.len() > MAX_DAYS_OFF {
            err(
                "too-many",
                map.key_loc(&["calendars", &name]),
                format!("calendar `{name}` has {} days off; at most {MAX_DAYS_OFF}", days.len()),
                "drop years long past".into(),
            );
        }
        for p in &c.processes {
            if let Some(other) = claimed.insert(p.clone(), name.clone()) {
                err(
                    "two-calendars",
                    map.loc(&["calendars", &name, "processes"]),
                    format!("process `{p}` is in calendars `{other}` and `{name}`"),
                    "a process follows one calendar: keep it in one list".into(),
                );
            }
        }
        calendars
            .insert(name, Calendar { days_off: days.into_iter().collect::<Vec<_>>().into(), processes: c.processes });
    }
    let departments = def.departments.into_iter().map(|(k, d)| (k, d.parent)).collect();
    Org { departments, positions: def.positions, users, calendars }
}

/// One `days_off:` entry → its dates.
fn expand(entry: &str) -> Result<Vec<NaiveDate>, String> {
    let date = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
    let range = |a: NaiveDate, b: NaiveDate| -> Result<Vec<NaiveDate>, String> {
        let n = (b - a).num_days();
        if !(0..MAX_RANGE_DAYS).contains(&n) {
            return Err(format!("`{entry}`: a range goes forward and spans at most {MAX_RANGE_DAYS} days"));
        }
        Ok(a.iter_days().take(n as usize + 1).collect())
    };
    let (a, b) = match entry.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (entry.trim(), entry.trim()),
    };
    if let (Some(x), Some(y)) = (date(a), date(b)) {
        return range(x, y);
    }
    // Yearly: MM-DD or MM-DD..MM-DD (may wrap over the new year).
    let md = |s: &str| -> Option<(u32, u32)> {
        let (m, d) = s.split_once('-')?;
        let (m, d) = (m.parse().ok()?, d.parse().ok()?);
        NaiveDate::from_ymd_opt(2000, m, d).map(|_| (m, d))
    };
    let (Some((m1, d1)), Some((m2, d2))) = (md(a), md(b)) else {
        return Err(format!("`{entry}` is not a date, a date range or a yearly MM-DD range"));
    };
    let mut out = Vec::new();
    for y in YEARLY_YEARS {
        let start = NaiveDate::from_ymd_opt(y, m1, d1);
        let end_year = if (m2, d2) < (m1, d1) { y + 1 } else { y };
        let end = NaiveDate::from_ymd_opt(end_year, m2, d2);
        if let (Some(s), Some(e)) = (start, end) {
            out.extend(range(s, e)?);
        }
    }
    out.retain(|d| YEARLY_YEARS.contains(&d.year()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const THREE_BY_THREE: &str = "\
positions: { 課長: 1, 部長: 2, 役員: 3 }
departments:
  本社: {}
  営業部: { parent: 本社 }
  営業一課: { parent: 営業部 }
  管理部: { parent: 本社 }
  法務課: { parent: 管理部 }
users:
  president: { department: 本社, position: 役員 }
  bucho: { department: 営業部, position: 部長 }
  kacho: { department: 営業一課, position: 課長 }
  sato: { department: 営業一課 }
  kanri: { department: 管理部, position: 部長 }
  legal1: { department: 法務課 }
  legal2:
    - { department: 法務課 }
    - { department: 営業一課, position: 課長, concurrent: true }
calendars:
  default: { days_off: [\"12-29..01-03\"] }
  工場: { days_off: [2026-08-13..2026-08-14], processes: [shipping] }
";

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn org() -> Org {
        Org::parse("org.yaml", THREE_BY_THREE, None).unwrap()
    }

    #[test]
    fn managers_walk_up_past_levels_without_a_senior() {
        let o = org();
        let on = d("2026-12-01");
        assert_eq!(o.manager_of("sato", on), Some("kacho"), "the 課長 of the same 課");
        assert_eq!(o.manager_of("kacho", on), Some("bucho"), "a 課長's manager is the 部長 one level up");
        assert_eq!(o.manager_of("bucho", on), Some("president"));
        assert_eq!(o.manager_of("president", on), None);
        assert_eq!(o.manager_of("legal1", on), Some("kanri"), "法務課 has no 課長: walk up to 管理部");
        assert_eq!(o.department_of("legal2", on), Some("法務課"), "the main post, not the concurrent one");
        assert_eq!(o.holders("営業一課", "課長", on), vec!["kacho", "legal2"], "concurrent posts hold positions");
        assert_eq!(o.position_in("法務課", "部長", on), Some("kanri"));
        assert_eq!(o.position_in("営業一課", "役員", on), Some("president"));
        assert_eq!(o.users_in("法務課", on), vec!["legal1", "legal2"]);
        assert_eq!(&*o.days_off_for("shipping"), &[d("2026-08-13"), d("2026-08-14")]);
        assert!(o.days_off_for("other").contains(&d("2027-01-02")));
        assert!(!o.days_off_for("other").contains(&d("2027-01-04")));
    }

    #[test]
    fn effective_dates_move_people() {
        let text = "positions: { 課長: 1 }\ndepartments: { A: {}, B: {} }\nusers:\n  k:\n    - { department: A, position: 課長, until: 2027-04-01 }\n    - { department: B, position: 課長, from: 2027-04-01 }\n  u: { department: A }\n";
        let o = Org::parse("org.yaml", text, None).unwrap();
        assert_eq!(o.manager_of("u", d("2027-03-31")), Some("k"));
        assert_eq!(o.manager_of("u", d("2027-04-01")), None, "k moved to B: A's 課長 is vacant");
        assert_eq!(o.department_of("k", d("2027-04-01")), Some("B"));
    }

    #[test]
    fn errors_name_line_and_column() {
        let cycle = "departments:\n  A: { parent: B }\n  B: { parent: A }\n";
        let e = Org::parse("org.yaml", cycle, None).unwrap_err().to_string();
        assert!(e.contains("org.yaml:2:3: error[department-cycle]"), "{e}");
        let unknown = "departments:\n  営業部: {}\nusers:\n  sato: { department: 営業 }\n";
        let e = Org::parse("org.yaml", unknown, None).unwrap_err().to_string();
        assert!(e.contains("org.yaml:4:23: error[unknown-department]: unknown department `営業`"), "{e}");
        let e = Org::parse(
            "org.yaml",
            "departments: { A: {} }\nusers:\n  ghost: { department: A }\n",
            Some(&|u| u != "ghost"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("org.yaml:3:3: error[unknown-user]"), "{e}");
        let two = "departments: { A: {}, B: {} }\nusers:\n  x: [{ department: A }, { department: B }]\n";
        let e = Org::parse("org.yaml", two, None).unwrap_err().to_string();
        assert!(e.contains("two-main-posts"), "{e}");
        let e = Org::parse("org.yaml", "departmets: {}\n", None).unwrap_err().to_string();
        assert!(e.contains("org.yaml:1:1"), "{e}");
        let e = Org::parse("org.yaml", "calendars: { default: { days_off: [2026-13-01] } }\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad-day-off"), "{e}");
    }
}

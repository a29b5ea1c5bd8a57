//! Start triggers (watch, timer, message), `set` mappings, timers, message catches
//! and boundary events.

use super::*;

/// `start: watch:`: the interval, the start variables (expressions over `record`)
/// and, when the engine knows its connectors, that `source` names an instance.
pub(super) fn compile_watch(
    cx: &mut Cx,
    w: &WatchDef,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    opts: &CompileOptions,
) -> Option<WatchSpec> {
    let mut ok = true;
    if let Some(known) = &opts.connectors {
        let prefix = format!("{}.", w.source);
        if !known.iter().any(|c| c.starts_with(&prefix)) {
            let sources: BTreeSet<&str> = known.iter().filter_map(|c| c.split_once('.').map(|(s, _)| s)).collect();
            cx.err(
                "unknown-connector",
                cx.loc(&["start", "watch", "source"]),
                format!("no connector instance `{}` is registered to watch", w.source),
                hint_for(&w.source, sources.iter().copied()),
            );
            ok = false;
        }
    }
    let every = match &w.every {
        Some(e) => match parse_duration(e) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                cx.err(
                    "bad-duration",
                    cx.loc(&["start", "watch", "every"]),
                    format!("`every: {e}` is too short"),
                    "poll at most once a second: write e.g. `every: 30s`",
                );
                ok = false;
                Duration::from_secs(60)
            }
            Err(msg) => {
                cx.err("bad-duration", cx.loc(&["start", "watch", "every"]), msg, "write e.g. `every: 30s`");
                ok = false;
                Duration::from_secs(60)
            }
        },
        None => Duration::from_secs(60),
    };
    let mut with_record = names.to_vec();
    with_record.push("record");
    let mut set = Vec::new();
    for (var, src) in &w.set {
        if !vars.contains_key(var) {
            cx.err(
                "undeclared-variable",
                cx.key_loc(&["start", "watch", "set", var]),
                format!("`set` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, names),
            );
            ok = false;
        } else if let Some(e) = cx.compile_expr(&["start", "watch", "set", var], src, &with_record) {
            set.push((var.clone(), e));
        } else {
            ok = false;
        }
    }
    let record_var = w.set.iter().find(|(_, src)| is_record_id(src)).map(|(var, _)| var.clone());
    ok.then(|| WatchSpec {
        source: w.source.clone(),
        settings: w.settings.clone().into_iter().collect(),
        every,
        set,
        on_retrigger: w.on_retrigger,
        record_var,
    })
}

/// `record["$id"]`, `record['$id']` or `record.$id` (spaces ignored): the record's id.
fn is_record_id(src: &str) -> bool {
    let s: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    matches!(s.as_str(), "record[\"$id\"]" | "record['$id']" | "record.$id")
}

/// What expressions in a node may read, and the process's zone.
pub(crate) struct Names<'a> {
    pub(crate) vars: &'a IndexMap<String, VarSpec>,
    pub(crate) names: &'a [&'a str],
    pub(crate) with_result: &'a [&'a str],
    pub(crate) tz: Tz,
}

pub(super) fn compile_start_trigger(
    cx: &mut Cx,
    def: &ProcessDef,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    tz: Tz,
) -> Option<StartTrigger> {
    let st = &def.start;
    if st.timer.is_some() && st.message.is_some() {
        cx.err(
            "several-kinds",
            cx.key_loc(&["start", "timer"]),
            "the start event has both `timer` and `message`".into(),
            "a process has one start event: keep one, start the other way by hand or from another process",
        );
        return None;
    }
    if st.set.is_some() && st.message.is_none() {
        cx.err(
            "misplaced-key",
            cx.key_loc(&["start", "set"]),
            "`set` on the start event maps a message payload, but this start has no `message`".into(),
            "remove `set`, or add `message: <name>`",
        );
        return None;
    }
    if let Some(name) = &st.message {
        if name.trim().is_empty() {
            cx.err(
                "bad-message",
                cx.loc(&["start", "message"]),
                "the message name is empty".into(),
                "write `message: 注文受付`",
            );
            return None;
        }
        let set = compile_set(cx, &["start", "set"], st.set.as_ref(), vars, names, "payload")?;
        return Some(StartTrigger::Message { name: name.clone(), set });
    }
    let Some(timer) = &st.timer else { return Some(StartTrigger::None) };
    let path = ["start", "timer"];
    let map = match timer {
        TimerDef::Full(m) => m,
        TimerDef::Short(_) => {
            cx.err(
                "bad-timer",
                cx.loc(&path),
                "a timer start needs a schedule".into(),
                "write `timer: { cron: \"0 9 * * 1-5\" }` or `timer: { cycle: R/2026-12-01T09:00:00+09:00/P1D }`",
            );
            return None;
        }
    };
    for (key, set) in [("duration", map.duration.is_some()), ("date", map.date.is_some()), ("at", map.at.is_some())] {
        if set {
            cx.err(
                "bad-timer",
                cx.key_loc(&["start", "timer", key]),
                format!("`{key}` does not apply to a timer start"),
                "a timer start repeats: use `cron` or `cycle`",
            );
            return None;
        }
    }
    let schedule = match (&map.cron, &map.cycle) {
        (Some(c), None) => Schedule::cron(c).map_err(|e| (e, "cron")),
        (None, Some(c)) => Schedule::cycle(c, tz).map_err(|e| (e, "cycle")),
        _ => {
            cx.err(
                "bad-timer",
                cx.loc(&path),
                "a timer start needs exactly one of `cron` and `cycle`".into(),
                "write `cron: \"0 9 * * *\"` (five fields, in the process time zone) or `cycle: R/<start>/<duration>`",
            );
            return None;
        }
    };
    match schedule {
        Ok(schedule) => Some(StartTrigger::Timer { schedule, catch_up: map.catch_up.unwrap_or_default() }),
        Err((e, key)) => {
            cx.err("bad-timer", cx.loc(&["start", "timer", key]), e, "see the timer start format in README.md");
            None
        }
    }
}

/// `set:` mappings: declared variables ← expressions that may also read `extra`.
pub(super) fn compile_set(
    cx: &mut Cx,
    path: &[&str],
    map: Option<&IndexMap<String, String>>,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    extra: &str,
) -> Option<Vec<(String, Expr)>> {
    let mut with_extra = names.to_vec();
    with_extra.push(extra);
    let mut out = Vec::new();
    let mut ok = true;
    for (var, src) in map.into_iter().flatten() {
        let mut here: Vec<&str> = path.to_vec();
        here.push(var);
        if !vars.contains_key(var) {
            cx.err(
                "undeclared-variable",
                cx.key_loc(&here),
                format!("`set` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, names),
            );
            ok = false;
        } else if let Some(e) = cx.compile_value_for(&here, src, &with_extra, var) {
            out.push((var.clone(), e));
        } else {
            ok = false;
        }
    }
    ok.then_some(out)
}

/// A timer of a catch event, event-based branch or boundary: `3d`, or one of
/// `duration`, `date`, `at`. `due` is allowed where `allow_due` says so.
pub(crate) fn compile_timer(
    cx: &mut Cx,
    path: &[&str],
    def: &TimerDef,
    nm: &Names,
    allow_due: bool,
) -> Option<TimerWhen> {
    let bad_hint = "write `timer: 3d`, `timer: { date: 2026-12-01T09:00:00+09:00 }` or `timer: { at: '<expression>' }`";
    let map = match def {
        TimerDef::Short(s) if s.trim() == "due" => {
            if allow_due {
                return Some(TimerWhen::Due);
            }
            cx.err(
                "bad-timer",
                cx.loc(path),
                "`timer: due` only applies to a boundary timer of a user task that has a `due`".into(),
                "give the user task a `due:` expression, or write a duration",
            );
            return None;
        }
        TimerDef::Short(s) => TimerMap { duration: Some(s.clone()), ..TimerMap::default() },
        TimerDef::Full(m) => m.clone(),
    };
    let is_short = matches!(def, TimerDef::Short(_));
    let sub = |key: &'static str| -> Vec<&str> {
        let mut v = path.to_vec();
        if !is_short {
            v.push(key);
        }
        v
    };
    for key in ["cron", "cycle", "catch_up"] {
        let set = match key {
            "cron" => map.cron.is_some(),
            "cycle" => map.cycle.is_some(),
            _ => map.catch_up.is_some(),
        };
        if set {
            let mut p = path.to_vec();
            p.push(key);
            cx.err(
                "bad-timer",
                cx.key_loc(&p),
                format!("`{key}` only applies to a timer start event"),
                "a timer here fires once: use `duration`, `date` or `at`",
            );
            return None;
        }
    }
    match (&map.duration, &map.date, &map.at) {
        (Some(d), None, None) => match schedule::parse_span(d) {
            Ok(span) => Some(TimerWhen::After(span)),
            Err(e) => {
                cx.err("bad-duration", cx.loc(&sub("duration")), e, bad_hint);
                None
            }
        },
        (None, Some(d), None) => match schedule::parse_instant(d, nm.tz) {
            Ok(t) => Some(TimerWhen::Date(t)),
            Err(e) => {
                cx.err("bad-timer", cx.loc(&sub("date")), e, bad_hint);
                None
            }
        },
        (None, None, Some(src)) => cx.compile_expr(&sub("at"), src, nm.names).map(TimerWhen::At),
        _ => {
            cx.err(
                "bad-timer",
                cx.loc(path),
                "a timer needs exactly one of `duration`, `date` and `at`".into(),
                bad_hint,
            );
            None
        }
    }
}

/// A message catch: name, correlation key expression and payload mapping.
pub(crate) fn compile_message(
    cx: &mut Cx,
    path: &[&str],
    name: &str,
    key: Option<&String>,
    set: Option<&IndexMap<String, String>>,
    nm: &Names,
) -> Option<MessageSpec> {
    let mut ok = true;
    if name.trim().is_empty() {
        cx.err("bad-message", cx.loc(path), "the message name is empty".into(), "write `message: 署名完了`");
        ok = false;
    }
    let mut key_path = path[..path.len() - 1].to_vec();
    key_path.push("key");
    let key = match key {
        Some(src) => Some(cx.compile_expr(&key_path, src, nm.names)?),
        None => None,
    };
    let mut set_path = path[..path.len() - 1].to_vec();
    set_path.push("set");
    let set = compile_set(cx, &set_path, set, nm.vars, nm.names, "payload")?;
    ok.then_some(MessageSpec { name: name.to_string(), key, set })
}

/// `boundary:` of a task (`on_task`) or a fork: timers, messages and errors.
pub(super) fn compile_boundary(
    cx: &mut Cx,
    id: &str,
    list: &[BoundaryDef],
    on_task: bool,
    has_due: bool,
    nm: &Names,
    resolve: &impl Fn(&mut Cx, &str, &[&str], &str) -> Option<NodeIx>,
) -> Option<Vec<Boundary>> {
    let what = if on_task { "task" } else { "fork" };
    let mut out = Vec::new();
    let mut ok = true;
    let mut listened: Vec<&str> = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let i = i.to_string();
        let here = ["nodes", id, "boundary", i.as_str()];
        let at = |k: &'static str| -> [&str; 5] { ["nodes", id, "boundary", i.as_str(), k] };
        let next = resolve(cx, &b.next, &at("next"), "next");
        if b.key.is_some() && b.message.is_none() {
            cx.err(
                "misplaced-key",
                cx.key_loc(&at("key")),
                "`key` is the correlation key of a message boundary, and this boundary has no `message`".into(),
                "remove `key`, or write `message: <name>` beside it",
            );
            ok = false;
        }
        let trigger = match (&b.timer, &b.error, &b.message) {
            (Some(t), None, None) => timer_boundary(cx, &at, b, t, nm, has_due, what),
            (None, Some(code), None) => error_boundary(cx, &at, b, code),
            (None, None, Some(name)) => {
                if listened.contains(&name.trim()) {
                    cx.err(
                        "bad-boundary",
                        cx.loc(&at("message")),
                        format!("`{id}` already listens for message `{name}`"),
                        "one boundary per message name: tell cases apart on its path (an exclusive gateway)",
                    );
                    ok = false;
                }
                listened.push(name.trim());
                message_boundary(cx, &at, b, name, nm, what)
            }
            _ => {
                cx.err(
                    "bad-boundary",
                    cx.key_loc(&here),
                    "a boundary event needs exactly one of `timer`, `message` and `error`".into(),
                    "write `- { timer: 3d, next: escalate }`, `- { message: 取消, key: 注文番号, next: cancel }` or `- { error: CODE, next: handle }`",
                );
                None
            }
        };
        let Some(trigger) = trigger else {
            ok = false;
            continue;
        };
        let set = match &trigger {
            BoundaryTrigger::Error { .. } => compile_set(cx, &at("set"), b.set.as_ref(), nm.vars, nm.names, "error"),
            // A message's mapping lives in its spec; a timer's `set` was refused.
            _ => Some(Vec::new()),
        };
        match (next, set) {
            (Some(next), Some(set)) => out.push(Boundary { trigger, next, set }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `- { timer: .., interrupting, every, times }`.
fn timer_boundary<'a>(
    cx: &mut Cx,
    at: &impl Fn(&'static str) -> [&'a str; 5],
    b: &BoundaryDef,
    t: &TimerDef,
    nm: &Names,
    has_due: bool,
    what: &str,
) -> Option<BoundaryTrigger> {
    let mut ok = true;
    if b.set.is_some() {
        cx.err(
            "misplaced-key",
            cx.key_loc(&at("set")),
            "`set` on a boundary timer maps nothing: timers carry no data".into(),
            "remove `set`, or set variables with a script on the timer's path",
        );
        ok = false;
    }
    let interrupting = b.interrupting.unwrap_or(true);
    let every = match &b.every {
        Some(_) if interrupting => {
            cx.err(
                "bad-boundary",
                cx.key_loc(&at("every")),
                format!("an interrupting timer ends the {what}, so it cannot repeat"),
                "add `interrupting: false` for a repeating reminder",
            );
            ok = false;
            None
        }
        Some(e) => match schedule::parse_span(e) {
            Ok(s) if !s.is_zero() => Some(s),
            Ok(_) => {
                cx.err("bad-duration", cx.loc(&at("every")), "`every` is zero".into(), "write e.g. `every: 1d`");
                ok = false;
                None
            }
            Err(e) => {
                cx.err("bad-duration", cx.loc(&at("every")), e, "write e.g. `every: 1d`");
                ok = false;
                None
            }
        },
        None => None,
    };
    if b.times.is_some() && b.every.is_none() {
        cx.err(
            "bad-boundary",
            cx.key_loc(&at("times")),
            "`times` counts repeats, but this timer has no `every`".into(),
            "add `every: 1d`, or remove `times`",
        );
        ok = false;
    }
    if b.times == Some(0) {
        cx.err("bad-boundary", cx.loc(&at("times")), "`times: 0` never fires".into(), "use 1 or more");
        ok = false;
    }
    let when = compile_timer(cx, &at("timer"), t, nm, has_due)?;
    ok.then_some(BoundaryTrigger::Timer { when, interrupting, every, times: b.times })
}

/// `- { error: CODE | any, set }`.
fn error_boundary<'a>(
    cx: &mut Cx,
    at: &impl Fn(&'static str) -> [&'a str; 5],
    b: &BoundaryDef,
    code: &str,
) -> Option<BoundaryTrigger> {
    let mut ok = true;
    for (key, set) in
        [("interrupting", b.interrupting.is_some()), ("every", b.every.is_some()), ("times", b.times.is_some())]
    {
        if set {
            cx.err(
                "misplaced-key",
                cx.key_loc(&at(key)),
                format!("`{key}` applies to boundary timers, not errors"),
                "an error boundary always ends the step; remove this key",
            );
            ok = false;
        }
    }
    let code = code.trim();
    if code.is_empty() {
        cx.err(
            "bad-boundary",
            cx.loc(&at("error")),
            "the error code is empty".into(),
            "write the code to catch, or `error: any`",
        );
        ok = false;
    }
    ok.then(|| BoundaryTrigger::Error { code: (code != "any").then(|| code.to_string()) })
}

/// `- { message: name, key, set, interrupting }`: checked like a message catch.
fn message_boundary<'a>(
    cx: &mut Cx,
    at: &impl Fn(&'static str) -> [&'a str; 5],
    b: &BoundaryDef,
    name: &str,
    nm: &Names,
    what: &str,
) -> Option<BoundaryTrigger> {
    let mut ok = true;
    for (key, set) in [("every", b.every.is_some()), ("times", b.times.is_some())] {
        if set {
            cx.err(
                "misplaced-key",
                cx.key_loc(&at(key)),
                format!("`{key}` repeats a boundary timer; a message boundary does not repeat by itself"),
                format!(
                    "remove `{key}`: with `interrupting: false` every matching message fires while the {what} runs"
                ),
            );
            ok = false;
        }
    }
    let message = compile_message(cx, &at("message"), name, b.key.as_ref(), b.set.as_ref(), nm)?;
    ok.then(|| BoundaryTrigger::Message { message, interrupting: b.interrupting.unwrap_or(true) })
}

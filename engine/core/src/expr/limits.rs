//! Bounds on one evaluation beyond rhai's own: wall time, the data a script holds,
//! and what `print`/`debug` may write.
//!
//! rhai counts operations and checks each string, array and map it builds, but not
//! the whole: a 1 MB string copied into 5,000 map entries passes every per-value
//! check, and `m == m` on a 10,000-entry map is one operation that takes
//! milliseconds, so 200,000 of them take minutes while the instance lock is held.
//!
//! These bounds are resources, not semantics: a process that stays inside them
//! behaves the same on any machine; one that does not is stopped with an incident
//! that says which bound it hit. The wall-clock deadline is the only place the
//! engine core reads a clock of its own (`Instant`, never the calendar), for the
//! same reason an operating system enforces a CPU time limit.
//!
//! The state of the running evaluation lives in a thread local: rhai runs an
//! evaluation on the calling thread, and its callbacks get no per-call context.

use rhai::{Blob, Dynamic, EvalAltResult, FnPtr, ImmutableString, Map, Position, Scope};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default wall-clock time the scripts of one event may take in all (every
/// expression a step evaluates counts); [`set_time_limit`] changes it.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(1);
/// Most bytes of data a script may add to what it was given: string and map-key
/// bytes, plus 16 per value. A string held twice counts twice (it would be
/// written twice when stored or turned into JSON).
pub const MAX_DATA_GROWTH: usize = 32 << 20;
/// Deepest nesting of arrays and maps a value an expression gives may have (a
/// stored instance is read back as JSON, whose parser stops at 128 levels).
pub const MAX_NESTING: usize = crate::types::MAX_NESTING;
/// Deepest nesting a script may hold while it runs: deeper is stopped before
/// rhai's own recursive clone, compare and drop could exhaust the stack.
const MAX_HELD_NESTING: usize = 256;
/// Longest `print`/`debug` line written; the rest is cut.
pub const MAX_PRINT_BYTES: usize = 1024;
/// Most `print`/`debug` lines one evaluation writes; later ones are dropped.
pub const MAX_PRINT_LINES: u32 = 20;
/// The clock is read every this many operations (a read costs about as much as a
/// cheap operation; one slow operation, like comparing two 10,000-entry maps, takes
/// milliseconds, so the deadline is still kept to within a few of them).
const CLOCK_EVERY: u64 = 16;
/// The data held is measured at most this often. Measuring walks every value in
/// scope, so doing it by time keeps its cost a small share of any evaluation, and a
/// short one (most are microseconds) never pays it; data cannot grow faster than
/// memory can be written, so a few milliseconds between measurements bound the
/// overshoot to tens of MB.
const MEASURE_EVERY: Duration = Duration::from_millis(5);
/// Cost of one value besides its bytes.
pub(super) const VALUE_COST: usize = 16;

static TIME_LIMIT_MS: AtomicU64 = AtomicU64::new(DEFAULT_TIME_LIMIT.as_millis() as u64);

/// Set the script time limit of one event, for the whole process (at least 1 ms).
/// Tests lower it; an operator may raise it for heavy scripts.
pub fn set_time_limit(limit: Duration) {
    TIME_LIMIT_MS.store((limit.as_millis() as u64).max(1), Ordering::Relaxed);
}

/// The script time limit of one event.
pub fn time_limit() -> Duration {
    Duration::from_millis(TIME_LIMIT_MS.load(Ordering::Relaxed))
}

struct Limits {
    started: Instant,
    deadline: Instant,
    /// The most data the scope may hold: what it held at the start plus the growth.
    data_cap: usize,
    /// When the data held is to be measured next (at the next variable read after).
    measure_at: Instant,
    measure_due: bool,
    prints: u32,
    /// Why the evaluation was stopped, in words for the incident.
    stopped: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<Limits>> = const { RefCell::new(None) };
    /// Script time the current event has left, while an [`EventBudget`] is open.
    static EVENT_LEFT: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Script time shared by every evaluation of one event (one runtime step): open
/// it before the step, it closes when dropped. Without one, each evaluation gets
/// the whole [`time_limit`]. A cancel or complete waiting for the instance lock
/// so waits at most about that long for a running script.
pub struct EventBudget {
    opened: bool,
}

impl EventBudget {
    pub fn open() -> Self {
        let opened = EVENT_LEFT.with(|c| {
            if c.get().is_some() {
                return false; // nested: the outer budget counts
            }
            c.set(Some(time_limit()));
            true
        });
        EventBudget { opened }
    }
}

impl Drop for EventBudget {
    fn drop(&mut self) {
        if self.opened {
            EVENT_LEFT.with(|c| c.set(None));
        }
    }
}

/// One evaluation under the limits; ends (and restores any outer one) when dropped.
pub(super) struct Running {
    outer: Option<Limits>,
}

impl Running {
    /// `held`: the size of the data in scope at the start (its input).
    pub(super) fn start(held: usize) -> Self {
        let started = Instant::now();
        let left = EVENT_LEFT.with(Cell::get).unwrap_or_else(time_limit);
        let limits = Limits {
            started,
            deadline: started + left,
            data_cap: held.saturating_add(MAX_DATA_GROWTH),
            measure_at: started + MEASURE_EVERY,
            measure_due: false,
            prints: 0,
            stopped: None,
        };
        Running { outer: CURRENT.with(|c| c.borrow_mut().replace(limits)) }
    }

    /// Why the evaluation was stopped by one of these bounds, if it was.
    pub(super) fn stopped(&self) -> Option<String> {
        CURRENT.with(|c| c.borrow().as_ref().and_then(|l| l.stopped.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let ended = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), self.outer.take()));
        if let Some(l) = ended {
            let spent = l.started.elapsed();
            EVENT_LEFT.with(|c| {
                if let Some(left) = c.get() {
                    c.set(Some(left.saturating_sub(spent)));
                }
            });
        }
    }
}

fn stop(l: &mut Limits, why: String) {
    if l.stopped.is_none() {
        l.stopped = Some(why);
    }
}

/// rhai's progress callback (`ops` operations so far): stop past the deadline, and
/// say when the data held is to be measured.
pub(super) fn on_progress(ops: u64) -> Option<Dynamic> {
    if ops % CLOCK_EVERY != 0 {
        return None;
    }
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let l = c.as_mut()?;
        let now = Instant::now();
        if now >= l.measure_at {
            l.measure_due = true;
        }
        if now < l.deadline {
            return None;
        }
        let limit = time_limit();
        stop(
            l,
            format!(
                "the script ran longer than {} ms (the script time one step may take) and was stopped; \
                 an endless loop, or work on very large data?",
                limit.as_millis()
            ),
        );
        Some(Dynamic::UNIT)
    })
}

/// rhai's variable callback: when a measurement is due, measure what the scope
/// holds (data only grows by being stored in a variable, which reads it).
pub(super) fn on_var(scope: &Scope) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let Some(l) = c.as_mut() else { return Ok(None) };
        if !l.measure_due {
            return Ok(None);
        }
        let measured = scope_size(scope, l.data_cap);
        l.measure_due = false;
        l.measure_at = Instant::now() + MEASURE_EVERY;
        let why = match measured {
            Ok(held) if held <= l.data_cap => return Ok(None),
            Ok(_) => format!(
                "the script holds more than {} MiB of data beyond its input and was stopped \
                 (a value copied many times counts each time)",
                MAX_DATA_GROWTH >> 20
            ),
            Err(why) => why,
        };
        stop(l, why.clone());
        Err(EvalAltResult::ErrorRuntime(why.into(), Position::NONE).into())
    })
}

/// Whether `print`/`debug` may write another line, and the line cut to size.
pub(super) fn admit_print(text: &str) -> Option<String> {
    let line = CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let Some(l) = c.as_mut() else { return Some(0) };
        l.prints = l.prints.saturating_add(1);
        (l.prints <= MAX_PRINT_LINES + 1).then_some(l.prints)
    })?;
    if line == MAX_PRINT_LINES + 1 {
        return Some(format!(
            "(more than {MAX_PRINT_LINES} lines printed; the rest of this evaluation's output is dropped)"
        ));
    }
    Some(truncate(text, MAX_PRINT_BYTES))
}

/// `text` cut to at most `max` bytes at a character boundary, saying how long it was.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// What the scope holds, counting up to a little past `cap` (so a huge scope costs
/// no more to measure than a full one); an error for data nested too deeply.
fn scope_size(scope: &Scope, cap: usize) -> Result<usize, String> {
    let mut total = 0usize;
    for (name, _, value) in scope.iter_raw() {
        total = total.saturating_add(name.len());
        add_size(value, &mut total, cap, 0)?;
        if total > cap {
            break;
        }
    }
    Ok(total)
}

fn add_size(d: &Dynamic, total: &mut usize, cap: usize, depth: usize) -> Result<(), String> {
    if depth > MAX_HELD_NESTING {
        return Err(format!("the script built data nested deeper than {MAX_HELD_NESTING} levels and was stopped"));
    }
    *total = total.saturating_add(VALUE_COST);
    if *total > cap {
        return Ok(());
    }
    if let Some(s) = d.read_lock::<ImmutableString>() {
        *total = total.saturating_add(s.len());
    } else if let Some(a) = d.read_lock::<rhai::Array>() {
        for v in a.iter() {
            add_size(v, total, cap, depth + 1)?;
            if *total > cap {
                break;
            }
        }
    } else if let Some(m) = d.read_lock::<Map>() {
        for (k, v) in m.iter() {
            *total = total.saturating_add(k.len());
            add_size(v, total, cap, depth + 1)?;
            if *total > cap {
                break;
            }
        }
    } else if let Some(b) = d.read_lock::<Blob>() {
        *total = total.saturating_add(b.len());
    } else if let Some(f) = d.read_lock::<FnPtr>() {
        for v in f.iter_curry() {
            add_size(v, total, cap, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_characters_whole() {
        let s = "あ".repeat(1000); // 3 bytes each
        let t = truncate(&s, 1024);
        assert!(t.starts_with(&"あ".repeat(341)), "{t}");
        assert!(t.ends_with("(3000 bytes in all)"), "{t}");
        assert_eq!(truncate("short", 1024), "short");
    }

    #[test]
    fn shared_values_count_each_time() {
        let big = Dynamic::from("x".repeat(1000));
        let arr: rhai::Array = vec![big.clone(); 10];
        let mut total = 0;
        add_size(&Dynamic::from_array(arr), &mut total, usize::MAX, 0).unwrap();
        assert_eq!(total, VALUE_COST + 10 * (VALUE_COST + 1000));
    }
}

//! A JSON Schema (draft 2020-12) of the process file, for editors: completion,
//! hover text and red squiggles while typing (`# yaml-language-server: $schema=…`).
//!
//! Generated, not written by hand: the objects and their keys come from the key
//! lists the loader checks ([`crate::load::schema`]), the node keys and kinds from
//! the kinds table ([`crate::kinds`]), enums from the model's own lists. A key
//! added there appears here with at least a generic description; the test
//! `every_key_is_described` asks for a real one. The schema checks shapes only
//! (keys, types, enums, duration patterns); meaning (references, expressions,
//! types of values) stays with `nagare validate`.

use crate::kinds::{self, KINDS};
use crate::load::schema as keys;
use crate::process::NotifyOn;
use crate::types::TYPE_NAMES;
use serde_json::{json, Map, Value};

/// A length of time: `30s`, `5m`, `2h`, `3d`, `1w`, `1h 30m`, or ISO 8601 `P3D`,
/// `PT2H`, `P1M`. ECMAScript and Rust regex syntax alike.
pub const DURATION_PATTERN: &str = "^ *(?:[Pp][0-9YMWDTHSymwdths.,]+|(?:[0-9]+ *[A-Za-z]+ *)+) *$";

fn duration_core() -> &'static str {
    DURATION_PATTERN.trim_start_matches("^ *").trim_end_matches(" *$")
}

/// The schema, as JSON.
pub fn schema() -> Value {
    let mut defs = Map::new();
    defs.insert("lane".into(), object("lane", keys::LANE_KEYS, &[]));
    defs.insert("notify".into(), object("notify", keys::NOTIFY_KEYS, &["on"]));
    defs.insert("variable".into(), object("variable", keys::VAR_KEYS, &["type"]));
    defs.insert("start".into(), object("start", keys::START_KEYS, &["next"]));
    defs.insert("rule".into(), object("rule", keys::RULE_KEYS, &["when", "message"]));
    defs.insert("watch".into(), object("watch", keys::WATCH_KEYS, &["source"]));
    defs.insert("branch".into(), object("branch", keys::BRANCH_KEYS, &["when", "next"]));
    defs.insert("retry".into(), object("retry", keys::RETRY_KEYS, &[]));
    defs.insert("timer_map".into(), object("timer", keys::TIMER_KEYS, &[]));
    defs.insert(
        "timer".into(),
        json!({
            "description": "When a timer fires: a duration (`3d`, `PT2H`), `due` (a user task's due date, boundary timers only), or a map with one of `duration`, `date`, `at`, and for start events `cron` or `cycle`.",
            "oneOf": [
                { "type": "string", "pattern": format!("^ *(?:due|{}) *$", duration_core()) },
                { "$ref": "#/$defs/timer_map" }
            ]
        }),
    );
    defs.insert("boundary".into(), object("boundary", keys::BOUNDARY_KEYS, &["next"]));
    defs.insert("event_branch".into(), object("event_branch", keys::EVENT_BRANCH_KEYS, &["next"]));
    defs.insert("end_error".into(), object("end", keys::END_KEYS, &["error"]));
    defs.insert("multi".into(), object("multi", keys::MULTI_KEYS, &["for_each", "as"]));
    defs.insert("approvers".into(), object("approvers", keys::APPROVERS_KEYS, &["users", "decision", "rejected"]));
    defs.insert(
        "users".into(),
        json!({
            "description": "Users: an expression giving a list of user ids (`部長一覧`), or the user ids as a list (`[tanaka, suzuki]`).",
            "oneOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string", "minLength": 1 } }
            ]
        }),
    );
    defs.insert("sub_process".into(), object("sub_process", keys::SUB_PROCESS_KEYS, &["start", "nodes"]));
    defs.insert("sub_start".into(), object("sub_start", keys::SUB_START_KEYS, &["next"]));
    defs.insert(
        "expressions".into(),
        json!({
            "type": "object",
            "description": "Variable name → expression (rhai) giving its value; a plain number or true/false is read as that expression.",
            "additionalProperties": { "type": ["string", "number", "boolean"] }
        }),
    );
    defs.insert("node".into(), node());

    let mut root = object("process", keys::TOP_KEYS, &["id", "start", "nodes"]);
    let root = root.as_object_mut().expect("an object schema");
    let mut out = Map::new();
    out.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    out.insert("title".into(), json!("nagare process"));
    out.append(root);
    out.insert("$defs".into(), Value::Object(defs));
    Value::Object(out)
}

/// The schema as pretty-printed text (what `nagare schema` prints).
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).expect("a JSON value prints");
    s.push('\n');
    s
}

/// An object with exactly `keys`, each with its schema and description.
fn object(what: &str, keys: &[&str], required: &[&str]) -> Value {
    let mut props = Map::new();
    for key in keys {
        props.insert((*key).to_string(), property(what, key));
    }
    let mut o = json!({
        "type": "object",
        "description": object_description(what),
        "additionalProperties": false,
        "properties": props,
    });
    let required: Vec<&&str> = required.iter().filter(|k| keys.contains(k)).collect();
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn object_description(what: &str) -> &'static str {
    match what {
        "process" => "A nagare process definition: lanes, variables, a start event and nodes.",
        "lane" => "A swimlane: a role whose members (the groups) may work its user tasks.",
        "notify" => "Which task events of this lane are announced, and through what.",
        "variable" => "A declared variable (or setting) with its type.",
        "start" => "The start event: where every new instance begins.",
        "rule" => "A form rule: when `when` is true, the start or completion is refused with `message`.",
        "watch" => "Start an instance per record an outside system reports (a record-change start).",
        "branch" => "One conditional flow of an exclusive or inclusive gateway.",
        "retry" => "Retry policy of a service task.",
        "timer" => "A timer as a map: one of `duration`, `date`, `at`, `cron`, `cycle`.",
        "boundary" => "An event attached to a task or fork: a timer or an error that leads elsewhere.",
        "event_branch" => "One way out of an event-based gateway: a message or a timer.",
        "end" => "An error end event: throws `error` to the nearest boundary that catches it.",
        "sub_process" => "An embedded sub-process: its own start, nodes and ends, local variables, `in` and `out`.",
        "sub_start" => "Where a sub-process's run begins.",
        "approvers" => "A consensus (合議): one task per approver, decided by `rule` (all, any or N), in parallel or in `sequential` order.",
        "multi" => "Run the task once per item of `for_each`, all at once or one after another, collecting each item's `output` into `into`.",
        "node" => "One flow node: exactly one kind key (user_task, service, exclusive …) and its keys.",
        _ => "An object of the process file.",
    }
}

fn s(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn duration(description: &str) -> Value {
    json!({ "type": "string", "pattern": DURATION_PATTERN, "description": description })
}

fn with_description(mut v: Value, description: &str) -> Value {
    v["description"] = json!(description);
    v
}

fn strings(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": description })
}

fn list_of(def: &str, description: &str) -> Value {
    json!({ "type": "array", "items": { "$ref": format!("#/$defs/{def}") }, "description": description })
}

fn map_of(def: &str, description: &str) -> Value {
    json!({ "type": "object", "additionalProperties": { "$ref": format!("#/$defs/{def}") }, "description": description })
}

fn reference(def: &str, description: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{def}"), "description": description })
}

fn expressions(description: &str) -> Value {
    reference("expressions", description)
}

/// The schema of `key` in object `what`; a key this table does not know yet gets
/// no constraint and a generic description (the loader still checks it).
fn property(what: &str, key: &str) -> Value {
    let v = match (what, key) {
        ("process", "id") => json!({ "type": "string", "description": "The process id: letters, digits, `-`, `_`; used in the API, CLI and store.", "minLength": 1 }),
        ("process", "name") => s("Display name (Japanese welcome), shown in the inbox and diagrams."),
        ("process", "version") => json!({ "type": ["string", "number"], "description": "The designer's own version label; the engine numbers deployments itself." }),
        ("process", "description") => s("What the process is for, shown to people starting it."),
        ("process", "time_zone") => s("IANA time zone of timers, cron schedules and dates without a time (default Asia/Tokyo)."),
        ("process", "lanes") => map_of("lane", "Swimlanes by key: roles whose groups work the user tasks placed in them."),
        ("process", "variables") => map_of("variable", "Declared process variables by name, with their types."),
        ("process", "settings") => map_of("variable", "Settings: declared like variables, the same for every instance, read-only in expressions, changed by administrators at run time without a redeploy."),
        ("process", "fallback") => s("The lane a user task opens in when its org expression (`assignee:`, `candidates:`) finds nobody; absent: an incident."),
        ("process", "priority") => json!({ "type": "integer", "minimum": 0, "maximum": 100, "description": "Executor priority (0–100, default 50) of the process's timers and of service calls without their own; higher runs first and gets a larger fair share." }),
        ("process", "retention") => json!({ "type": "string", "pattern": DURATION_PATTERN, "description": "How long a completed instance stays in the live store before `nagare archive` moves it to the archive (`90d`); absent: for ever." }),
        ("process", "start") => reference("start", "The start event."),
        ("process", "nodes") => map_of("node", "The flow nodes by id; each is exactly one kind."),

        ("lane", "name") => s("Display name of the lane."),
        ("lane", "groups") => strings("Groups whose members may work this lane's user tasks."),
        ("lane", "notify") => reference("notify", "Mail (or another notification) about this lane's user tasks."),
        ("notify", "on") => json!({
            "type": "array",
            "description": "The task events announced.",
            "items": { "enum": NotifyOn::ALL.iter().map(|(k, _)| *k).collect::<Vec<_>>() }
        }),
        ("notify", "via") => s("The connector instance that delivers (`mail`: its `mail.send`); default `mail`."),

        ("variable", "type") => json!({ "enum": TYPE_NAMES, "description": "The variable's type." }),
        ("variable", "label") => s("Label shown on forms."),
        ("variable", "required") => json!({ "type": "boolean", "description": "Must be given when an instance starts." }),
        ("variable", "options") => strings("Allowed values of a `choice`."),
        ("variable", "default") => json!({ "description": "Value before anyone sets it (of the variable's type)." }),
        ("variable", "max_length") => json!({ "type": "integer", "minimum": 0, "description": "Longest string accepted, in characters." }),
        ("variable", "max_size") => json!({ "type": "integer", "minimum": 0, "description": "Largest file accepted, in bytes (`type: file`)." }),
        ("variable", "content_types") => strings("Accepted content types (`type: file`), e.g. `[application/pdf]`."),
        ("variable", "sensitive") => json!({ "type": "boolean", "description": "A secret of the business: masked in history, logs and views except for the lanes whose forms show it." }),

        ("start", "name") => s("Display name of the start event."),
        ("start", "timer") => reference("timer", "Also start instances on a schedule (`cron` or `cycle`)."),
        ("start", "message") => s("Also start an instance when this message arrives."),
        ("start", "set") => expressions("Message payload → variables (expressions reading `payload`)."),
        ("start", "watch") => reference("watch", "Start an instance per record an outside system reports."),
        ("start", "rules") => list_of("rule", "Checks on the start form beyond each field's type; all are reported at once."),
        ("start", "groups") => strings("Groups whose members may start the process by hand; empty: anyone."),
        ("start", "next") => s("The first node (an id under `nodes`)."),

        ("rule", "when") => s("Expression: when true, the form is refused."),
        ("rule", "field") => s("The field the message is shown at."),
        ("rule", "message") => s("What the person is told."),

        ("watch", "source") => s("A connector instance name: `kintone` for the `kintone.*` connectors."),
        ("watch", "settings") => json!({ "type": "object", "description": "Settings for the watcher, literal (e.g. `query:`)." }),
        ("watch", "every") => duration("Polling interval (`30s`, `5m`); default 1m."),
        ("watch", "set") => expressions("Start variables: expressions over `record`, the item that was found."),
        ("watch", "on_retrigger") => json!({ "enum": ["new", "ignore"], "description": "A record that matches again after its instance ended: start a `new` instance (the default) or `ignore` it." }),

        ("branch", "when") => s("Condition (an expression) for this branch."),
        ("branch", "next") => s("The node this branch leads to."),

        ("retry", "attempts") => json!({ "type": "integer", "minimum": 1, "maximum": 100, "description": "Attempts in all, the first included (1 to 100)." }),
        ("retry", "backoff") => json!({
            "type": "string",
            "pattern": format!("^ *{d}(?: *\\.\\. *{d})? *$", d = duration_core()),
            "description": "Wait between attempts: `2s..5m` (exponential from the first to the second) or one duration."
        }),

        ("timer", "duration") => duration("After this long: `3d`, `PT2H`."),
        ("timer", "date") => s("At this date or instant (ISO 8601; a date alone is midnight in the process's zone)."),
        ("timer", "at") => s("At the instant (or date) an expression gives."),
        ("timer", "cron") => s("Start events: a cron schedule (`0 9 * * 1-5`) in the process's zone."),
        ("timer", "cycle") => s("Start events: an ISO 8601 repeating interval (`R/2026-12-01T09:00:00+09:00/P1D`)."),
        ("timer", "catch_up") => json!({ "enum": ["once", "skip"], "description": "Starts missed while the engine was down: start `once` (the default) or `skip` them." }),

        ("boundary", "timer") => reference("timer", "A timer boundary event: when it fires."),
        ("boundary", "error") => s("An error boundary event: the error code to catch, or `any`."),
        ("boundary", "interrupting") => json!({ "type": "boolean", "description": "Timers only: `false` leaves the task running (a reminder)." }),
        ("boundary", "every") => duration("Non-interrupting timers: fire again after this long."),
        ("boundary", "times") => json!({ "type": "integer", "minimum": 1, "description": "With `every`: how many times in all." }),
        ("boundary", "set") => expressions("Errors: variables from `error` (`error.code`, `error.message`)."),
        ("boundary", "next") => s("Where the flow goes when the event happens."),
        ("boundary", "message") => s("A message name: the boundary fires when this message arrives for the node."),
        ("boundary", "key") => s("Messages only: the correlation key expression, evaluated when the node starts waiting."),

        ("event_branch", "message") => s("Wait for this message."),
        ("event_branch", "key") => s("Correlation key expression of the message."),
        ("event_branch", "set") => expressions("Message payload → variables (expressions reading `payload`)."),
        ("event_branch", "timer") => reference("timer", "Or wait for this timer."),
        ("event_branch", "next") => s("Where the flow goes when this event wins."),

        ("sub_process", "variables") => map_of("variable", "Local variables: one copy per run, gone when it ends; names new in the file."),
        ("sub_process", "in") => expressions("Local variable := expression over the variables outside, when a run starts."),
        ("sub_process", "out") => expressions("Variable outside := expression over the variables inside, when a run ends."),
        ("sub_process", "start") => reference("sub_start", "Its own start: `{ next: <first node inside> }`."),
        ("sub_process", "nodes") => map_of("node", "Its nodes, by id (ids unique in the whole file); flows stay inside."),
        ("sub_start", "name") => s("Display name of the sub-process's start."),
        ("sub_start", "next") => s("The first node inside (an id under this sub-process's `nodes`)."),
        ("multi", "for_each") => s("An expression giving the list of items."),
        ("multi", "as") => s("The name each item is read by inside the task."),
        ("multi", "index") => s("The name of the item's position (0, 1, 2 …), if wanted."),
        ("multi", "sequential") => json!({ "type": "boolean", "description": "One item after another (default: all at once)." }),
        ("multi", "output") => s("What each finished item contributes to `into` (an expression; a service task's `result` is readable)."),
        ("multi", "into") => s("A declared list variable that receives the outputs, in item order."),
        ("multi", "complete_when") => s("Stop early when this holds (checked after each item); reads `results`, `done`, `total`."),
        ("multi", "limit") => json!({ "type": "integer", "minimum": 1, "maximum": crate::process::MAX_ITEMS, "description": "Most items accepted (default and ceiling: 10,000); more is an incident." }),

        ("approvers", "users") => reference("users", "Who approves, in order: an expression giving a list of user ids, or a list of them."),
        ("approvers", "rule") => json!({
            "oneOf": [{ "enum": ["all", "any"] }, { "type": "integer", "minimum": 1, "maximum": crate::process::MAX_ITEMS }],
            "description": "How many must approve: `all` (the default), `any` (one), or a number N (at least N)."
        }),
        ("approvers", "order") => json!({ "enum": ["parallel", "sequential"], "description": "`parallel`: every approver at once (the default); `sequential`: one after another, in list order." }),
        ("approvers", "decision") => s("The form field each approver decides with: a declared bool (true approves) or choice variable; local to each approver's task."),
        ("approvers", "approve") => s("For a choice `decision`: the option that approves."),
        ("approvers", "comment") => s("An optional form field for each approver's comment (a declared variable, local to their task)."),
        ("approvers", "into") => s("A declared list variable receiving `{user, decision, comment, at}` per approver, in list order."),
        ("approvers", "rejected") => s("The node the token goes to when the rule can no longer be met."),
        ("approvers", "as") => s("The name the approver's user id is read by inside the task (default `approver`)."),
        ("end", "error") => s("The error code thrown."),
        ("end", "message") => s("A message for the error."),
        _ => json!({ "description": format!("`{key}` of {what} (see the README).") }),
    };
    v
}

/// A node: every key of the table; exactly one kind key.
fn node() -> Value {
    let mut props = Map::new();
    for key in kinds::node_keys() {
        props.insert((*key).to_string(), node_property(key));
    }
    let one_kind: Vec<Value> = KINDS.iter().map(|k| json!({ "required": [k.key] })).collect();
    json!({
        "type": "object",
        "description": object_description("node"),
        "additionalProperties": false,
        "properties": props,
        "oneOf": one_kind,
    })
}

fn node_property(key: &str) -> Value {
    if let Some(k) = kinds::kind(key) {
        let description = format!("Kind `{}`: {} Value: {}", k.key, k.summary, k.body);
        let shape = match key {
            "user_task" | "service" | "script" | "join" | "message" | "call" | "circulate" => {
                json!({ "type": "string" })
            }
            "exclusive" | "inclusive" => json!({ "type": "array", "items": { "$ref": "#/$defs/branch" } }),
            "parallel" => json!({ "type": "array", "items": { "type": "string" } }),
            "event_based" => json!({ "type": "array", "items": { "$ref": "#/$defs/event_branch" } }),
            "timer" => json!({ "$ref": "#/$defs/timer" }),
            "sub_process" => json!({ "$ref": "#/$defs/sub_process" }),
            "end" => json!({ "oneOf": [
                { "type": "null" },
                { "enum": ["normal", "terminate"] },
                { "$ref": "#/$defs/end_error" }
            ] }),
            // A kind this generator does not know the value of: any value.
            _ => json!({}),
        };
        return with_description(shape, &description);
    }
    let owners = kinds::owners(key);
    let of = if owners.is_empty() {
        "any node".to_string()
    } else {
        owners.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    };
    let (shape, what) = match key {
        "name" => (json!({ "type": "string" }), "Display name of the node (diagrams, the inbox).".to_string()),
        "description" => (json!({ "type": "string" }), "What the node is for.".to_string()),
        "lane" => (json!({ "type": "string" }), "The lane (a key under `lanes`) the node is drawn in; a user task's lane says who works it.".to_string()),
        "next" => (json!({ "type": "string" }), "The node the flow goes to next.".to_string()),
        "key" => (json!({ "type": "string" }), "Correlation key expression of the message; on a call, the called instance's business key.".to_string()),
        "version" => (json!({ "type": "integer", "minimum": 1 }), "The called process's deployed version, pinned (default: the latest when called).".to_string()),
        "in" => (json!({ "$ref": "#/$defs/expressions" }), "Called process's variable := expression over ours, when the call starts.".to_string()),
        "out" => (json!({ "$ref": "#/$defs/expressions" }), "Our variable := expression over the called instance's final variables.".to_string()),
        "boundary" => (json!({ "type": "array", "items": { "$ref": "#/$defs/boundary" } }), "Events attached to the node: timers and errors.".to_string()),
        "form" => (
            json!({ "type": "object", "additionalProperties": { "enum": ["required", "optional", "readonly"] } }),
            "The task form: variable → `required`, `optional` or `readonly`.".to_string(),
        ),
        "due" => (json!({ "type": "string" }), "Due date of the task: a span from when it opens (`3bd` business days, `2d`, `4h`) or an expression (e.g. `add_days(now, 3)`).".to_string()),
        "assignee" => (json!({ "type": "string" }), "The user the task is given to when it opens (an expression, e.g. `started_by`); unset: the lane's groups share it.".to_string()),
        "candidates" => (json!({ "type": "string" }), "Users offered the task (an expression giving a list of user ids, e.g. `users_in(\"法務部\")`); they share it instead of the lane's groups.".to_string()),
        "skip" => (
            json!({ "type": "array", "items": { "enum": ["applicant", "approved"] } }),
            "Skip the step when the resolved approver is the applicant (`applicant`) or already completed an earlier task of this instance (`approved`).".to_string(),
        ),
        "send_back" => (json!({ "type": "string" }), "The node a person may send the task back to (with a comment).".to_string()),
        "outcomes" => (
            json!({ "type": "object", "additionalProperties": { "type": "string" } }),
            "Named outcomes besides `next`, e.g. `reject: 却下`: outcome → node.".to_string(),
        ),
        "rules" => (json!({ "type": "array", "items": { "$ref": "#/$defs/rule" } }), "Checks on the completed form beyond each field's type.".to_string()),
        "with" => (json!({ "type": "object" }), "Connector inputs: name → expression (a string) or a literal value.".to_string()),
        "set" => (json!({ "$ref": "#/$defs/expressions" }), "Variables from the result: name → expression (reading `result`).".to_string()),
        "retry" => (json!({ "$ref": "#/$defs/retry" }), "Retry policy: `{ attempts: 5, backoff: 2s..1m }`.".to_string()),
        "timeout" => (json!({ "type": "string", "pattern": DURATION_PATTERN }), "How long one attempt may take (`10s`).".to_string()),
        "priority" => (json!({ "type": ["integer", "string"], "minimum": 0, "maximum": 100 }), "Priority from 0 to 100 (default 50; higher first): an integer or an expression. A user task's orders the inbox (`?sort=priority`); a service task's orders the executor's queue.".to_string()),
        "default" => (json!({ "type": "string" }), "The node taken when no branch's condition holds.".to_string()),
        "approvers" => (
            json!({ "$ref": "#/$defs/approvers" }),
            "A consensus (合議): several approvers, each with their own task; `rule` all, any or N, `order` parallel or sequential.".to_string(),
        ),
        "to" => (json!({ "$ref": "#/$defs/users" }), "Who reads the circulation: an expression giving a list of user ids, or a list of them.".to_string()),
        "multi_instance" => (
            json!({ "$ref": "#/$defs/multi" }),
            "Run the task once per item of a list (`for_each`, `as`), in parallel or `sequential`.".to_string(),
        ),
        _ => (json!({}), format!("`{key}` (see the README).")),
    };
    with_description(shape, &format!("{what} Taken by: {of}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of every object says what it is (no generic fallback text).
    #[test]
    fn every_key_is_described() {
        fn walk(v: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    let d = p.get("description").and_then(Value::as_str).unwrap_or("");
                    if d.is_empty() || d.contains("see the README") {
                        missing.push(format!("{path}.{k}"));
                    }
                }
            }
            if let Some(defs) = v.get("$defs").and_then(Value::as_object) {
                for (k, d) in defs {
                    walk(d, k, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&schema(), "process", &mut missing);
        assert!(
            missing.is_empty(),
            "keys without a description: {missing:?}; add their lines to `property` or `node_property` in \
             engine/core/src/schema.rs (a schema for the value and a description)"
        );
    }

    #[test]
    fn every_kind_is_one_of_the_node_shapes() {
        let s = schema();
        let one_of = s["$defs"]["node"]["oneOf"].as_array().unwrap();
        assert_eq!(one_of.len(), KINDS.len());
        for k in KINDS {
            assert!(s["$defs"]["node"]["properties"][k.key]["description"].as_str().unwrap().contains(k.summary));
        }
    }
}

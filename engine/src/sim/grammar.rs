//! Random processes from a small block grammar, written out as YAML.
//!
//! A process is a sequence of blocks; a block is a user task (optionally with a
//! form, an interrupting timer or a repeating reminder), a service task (retries,
//! an error boundary for a business code or for any failure, a timer boundary), a
//! script, a timer catch, a message catch keyed on the instance's `k`, an
//! event-based gateway (a message against a timer), an exclusive choice whose
//! branches merge again, or a parallel fork closed by its join, which may catch an
//! error thrown by an error end inside it and may have a deadline, a repeating
//! reminder or a cancelling message on the whole fork. User tasks may have an error
//! boundary for a person ending them with [`TASK_ERROR`], and user and service tasks
//! message boundaries (interrupting or not) keyed on `k`.

use super::rng::Rng;
use std::fmt::Write as _;

/// What the driver needs to know about a generated process.
#[derive(Debug, Clone)]
pub struct Generated {
    pub id: String,
    pub yaml: String,
    /// Names of the messages its catches wait for (keyed on `k`).
    pub messages: Vec<String>,
}

/// Business error code the simulated connector may answer with.
pub const BUSINESS_CODE: &str = "REJECTED";
/// Error code a person may end a user task with (`Engine::fail_task`).
pub const TASK_ERROR: &str = "TASK_FAILED";
/// Error code thrown by error ends inside forks that catch it.
const FORK_ERROR: &str = "FORK_FAILED";
/// Name of the simulated connector.
pub const CONNECTOR: &str = "sim";

#[derive(Debug, Clone)]
enum Block {
    Task {
        form: bool,
        due: bool,
        boundary: TaskBoundary,
        catches: bool,
    },
    Service {
        attempts: u8,
        catch: Catch,
        timer: bool,
        /// An interrupting message boundary.
        listen: bool,
    },
    Script {
        var: u8,
        add: u8,
    },
    Timer {
        minutes: u16,
    },
    Message,
    /// A message against a timer of `minutes`.
    Race {
        minutes: u16,
    },
    /// Inside a fork that catches: an error end when `v<var> > threshold`.
    Throw {
        var: u8,
        threshold: u8,
    },
    Exclusive(Vec<(u8, u8, Vec<Block>)>),
    /// Branches, whether the fork catches errors thrown inside it, and its timer or
    /// message boundary.
    Parallel(Vec<Vec<Block>>, bool, ForkBoundary),
}

#[derive(Debug, Clone, Copy)]
enum TaskBoundary {
    None,
    Interrupt(u16),
    Remind(u16),
    /// A message boundary: interrupting, or a side path each time it arrives.
    Listen(bool),
}

#[derive(Debug, Clone, Copy)]
enum ForkBoundary {
    None,
    /// An interrupting timer ending every branch.
    Deadline(u16),
    /// A repeating non-interrupting timer.
    Remind(u16),
    /// An interrupting message ending every branch.
    Cancel,
}

#[derive(Debug, Clone, Copy)]
enum Catch {
    None,
    Business,
    Any,
}

#[derive(Clone, Copy)]
struct Ctx {
    depth: u32,
    hostile_dates: bool,
    /// Inside a fork that catches [`FORK_ERROR`].
    catching: bool,
}

fn block(rng: &mut Rng, cx: Ctx) -> Block {
    let compound = if cx.depth < 2 { 2 } else { 0 };
    let throw = if cx.catching { 2 } else { 0 };
    let hostile_dates = cx.hostile_dates;
    match rng.weighted(&[5, 5, 2, 2, 2, compound, compound, 1, throw]) {
        0 => Block::Task {
            form: rng.chance(600),
            due: hostile_dates && rng.chance(300),
            boundary: match rng.below(6) {
                0 => TaskBoundary::Interrupt(rng.range(10, 300) as u16),
                1 => TaskBoundary::Remind(rng.range(10, 120) as u16),
                2 => TaskBoundary::Listen(rng.chance(500)),
                _ => TaskBoundary::None,
            },
            catches: rng.chance(300),
        },
        1 => Block::Service {
            attempts: rng.range(1, 4) as u8,
            catch: *rng.pick(&[Catch::None, Catch::Business, Catch::Any]),
            timer: rng.chance(250),
            listen: rng.chance(150),
        },
        2 => Block::Script { var: rng.below(2) as u8, add: rng.range(1, 5) as u8 },
        3 => Block::Timer { minutes: rng.range(1, 600) as u16 },
        4 => Block::Message,
        5 => {
            let n = rng.range(2, 3);
            let inner = Ctx { depth: cx.depth + 1, ..cx };
            Block::Exclusive((0..n).map(|_| (rng.below(2) as u8, rng.below(10) as u8, seq(rng, inner))).collect())
        }
        6 => {
            let n = rng.range(2, 3);
            let catches = rng.chance(400);
            let inner = Ctx { depth: cx.depth + 1, catching: cx.catching || catches, ..cx };
            let boundary = match rng.below(6) {
                0 => ForkBoundary::Deadline(rng.range(30, 600) as u16),
                1 => ForkBoundary::Remind(rng.range(10, 120) as u16),
                2 => ForkBoundary::Cancel,
                _ => ForkBoundary::None,
            };
            Block::Parallel((0..n).map(|_| seq(rng, inner)).collect(), catches, boundary)
        }
        7 => Block::Race { minutes: rng.range(5, 600) as u16 },
        _ => Block::Throw { var: rng.below(2) as u8, threshold: rng.below(10) as u8 },
    }
}

fn seq(rng: &mut Rng, cx: Ctx) -> Vec<Block> {
    let n = rng.range(1, if cx.depth == 0 { 4 } else { 2 });
    (0..n).map(|_| block(rng, cx)).collect()
}

/// A random process named `id`. `hostile_dates` adds task due dates computed from
/// a form value (`add_days(now, v1)`), which overflow with hostile numbers.
pub fn generate(rng: &mut Rng, id: &str, hostile_dates: bool) -> Generated {
    let program = seq(rng, Ctx { depth: 0, hostile_dates, catching: false });
    let mut e = Emitter::default();
    let first = e.seq(&program, "end");
    let mut yaml = format!("id: {id}\nlanes:\n  staff: {{ groups: [staff] }}\nvariables:\n");
    yaml.push_str("  k: { type: string, required: true }\n");
    yaml.push_str("  v0: { type: number, default: 0 }\n  v1: { type: number, default: 1 }\n");
    yaml.push_str("  s0: { type: string, max_length: 200 }\n  r0: { type: number }\n  e0: { type: string }\n");
    writeln!(yaml, "start: {{ next: {first} }}\nnodes:").expect("write");
    for n in &e.nodes {
        yaml.push_str(n);
        yaml.push('\n');
    }
    yaml.push_str("  end: { end: }\n");
    Generated { id: id.to_string(), yaml, messages: e.messages }
}

#[derive(Default)]
struct Emitter {
    nodes: Vec<String>,
    counter: usize,
    messages: Vec<String>,
}

impl Emitter {
    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// A side path (a script and its own end) for a non-interrupting boundary.
    fn side_path(&mut self) -> String {
        let side = self.id("r");
        let end = self.id("e");
        self.nodes.push(format!("  {side}: {{ script: 'v1 = v1 + 1;', next: {end} }}"));
        self.nodes.push(format!("  {end}: {{ end: }}"));
        side
    }

    /// A message boundary of node `owner` keyed on `k` (its message is one the
    /// driver sends): interrupting to `next`, or a side path.
    fn listen(&mut self, owner: &str, interrupting: bool, next: &str) -> String {
        let name = format!("msg_b{owner}");
        self.messages.push(name.clone());
        match interrupting {
            true => format!("{{ message: {name}, key: k, next: {next} }}"),
            false => {
                let side = self.side_path();
                format!("{{ message: {name}, key: k, interrupting: false, next: {side} }}")
            }
        }
    }

    fn seq(&mut self, seq: &[Block], next: &str) -> String {
        let mut next = next.to_string();
        for b in seq.iter().rev() {
            next = self.block(b, &next);
        }
        next
    }

    fn block(&mut self, b: &Block, next: &str) -> String {
        match b {
            Block::Task { form, due, boundary, catches } => {
                let id = self.id("t");
                let mut node = format!("  {id}: {{ user_task: 'Task {id}', lane: staff, next: {next}");
                if *form {
                    node.push_str(", form: { v0: optional, s0: optional }");
                }
                if *due {
                    node.push_str(", due: 'add_days(now, v1)'");
                }
                let mut boundary = match boundary {
                    TaskBoundary::None => Vec::new(),
                    TaskBoundary::Interrupt(m) => vec![format!("{{ timer: {m}m, next: {next} }}")],
                    TaskBoundary::Remind(m) => {
                        let side = self.id("r");
                        let end = self.id("e");
                        self.nodes.push(format!("  {side}: {{ script: 'v1 = v1 + 1;', next: {end} }}"));
                        self.nodes.push(format!("  {end}: {{ end: }}"));
                        vec![format!("{{ timer: {m}m, interrupting: false, every: {m}m, times: 3, next: {side} }}")]
                    }
                    TaskBoundary::Listen(true) => vec![self.listen(&id, true, next)],
                    TaskBoundary::Listen(false) => vec![self.listen(&id, false, next)],
                };
                if *catches {
                    boundary.push(format!("{{ error: {TASK_ERROR}, set: {{ e0: error.message }}, next: {next} }}"));
                }
                if !boundary.is_empty() {
                    write!(node, ", boundary: [ {} ]", boundary.join(", ")).expect("write");
                }
                node.push_str(" }");
                self.nodes.push(node);
                id
            }
            Block::Service { attempts, catch, timer, listen } => {
                let id = self.id("c");
                let mut node = format!(
                    "  {id}: {{ service: {CONNECTOR}, with: {{ n: v0, k: k }}, retry: {{ attempts: {attempts}, backoff: 1s..1m }}, set: {{ r0: result.value }}, next: {next}"
                );
                let mut boundary = Vec::new();
                match catch {
                    Catch::None => {}
                    Catch::Business => boundary
                        .push(format!("{{ error: {BUSINESS_CODE}, set: {{ e0: error.message }}, next: {next} }}")),
                    Catch::Any => boundary.push(format!("{{ error: any, next: {next} }}")),
                }
                if *timer {
                    boundary.push(format!("{{ timer: 2h, next: {next} }}"));
                }
                if *listen {
                    boundary.push(self.listen(&id, true, next));
                }
                if !boundary.is_empty() {
                    write!(node, ", boundary: [ {} ]", boundary.join(", ")).expect("write");
                }
                node.push_str(" }");
                self.nodes.push(node);
                id
            }
            Block::Script { var, add } => {
                let id = self.id("s");
                self.nodes.push(format!("  {id}: {{ script: 'v{var} = v{var} + {add};', next: {next} }}"));
                id
            }
            Block::Timer { minutes } => {
                let id = self.id("w");
                self.nodes.push(format!("  {id}: {{ timer: {minutes}m, next: {next} }}"));
                id
            }
            Block::Message => {
                let id = self.id("m");
                let name = format!("msg_{id}");
                self.nodes.push(format!("  {id}: {{ message: {name}, key: k, next: {next} }}"));
                self.messages.push(name);
                id
            }
            Block::Race { minutes } => {
                let id = self.id("g");
                let name = format!("msg_{id}");
                self.nodes.push(format!(
                    "  {id}: {{ event_based: [ {{ message: {name}, key: k, next: {next} }}, {{ timer: {minutes}m, next: {next} }} ] }}"
                ));
                self.messages.push(name);
                id
            }
            Block::Throw { var, threshold } => {
                let id = self.id("x");
                let end = self.id("e");
                self.nodes.push(format!("  {end}: {{ end: {{ error: {FORK_ERROR}, message: 'v{var} too large' }} }}"));
                self.nodes.push(format!(
                    "  {id}:\n    exclusive:\n      - {{ when: 'v{var} > {threshold}', next: {end} }}\n    default: {next}"
                ));
                id
            }
            Block::Exclusive(branches) => {
                let id = self.id("x");
                let firsts: Vec<String> = branches.iter().map(|(_, _, s)| self.seq(s, next)).collect();
                let mut node = format!("  {id}:\n    exclusive:\n");
                let last = branches.len() - 1;
                for ((var, threshold, _), first) in branches.iter().zip(&firsts).take(last) {
                    writeln!(node, "      - {{ when: 'v{var} > {threshold}', next: {first} }}").expect("write");
                }
                write!(node, "    default: {}", firsts[last]).expect("write");
                self.nodes.push(node);
                id
            }
            Block::Parallel(branches, catches, watch) => {
                let fork = self.id("f");
                let join = self.id("j");
                self.nodes.push(format!("  {join}: {{ join: {fork}, next: {next} }}"));
                let firsts: Vec<String> = branches.iter().map(|s| self.seq(s, &join)).collect();
                let mut boundary = Vec::new();
                if *catches {
                    boundary.push(format!("{{ error: {FORK_ERROR}, set: {{ e0: error.message }}, next: {next} }}"));
                }
                match watch {
                    ForkBoundary::None => {}
                    ForkBoundary::Deadline(m) => boundary.push(format!("{{ timer: {m}m, next: {next} }}")),
                    ForkBoundary::Remind(m) => {
                        let side = self.side_path();
                        boundary.push(format!("{{ timer: {m}m, interrupting: false, every: {m}m, next: {side} }}"));
                    }
                    ForkBoundary::Cancel => boundary.push(self.listen(&fork, true, next)),
                }
                let boundary = match boundary.is_empty() {
                    true => String::new(),
                    false => format!(", boundary: [ {} ]", boundary.join(", ")),
                };
                self.nodes.push(format!("  {fork}: {{ parallel: [{}]{boundary} }}", firsts.join(", ")));
                fork
            }
        }
    }
}

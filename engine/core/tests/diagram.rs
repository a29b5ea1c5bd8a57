//! Diagrams of every process we ship and every trace fixture: they render as
//! well-formed SVG, the same bytes each time, with every node and lane; no two
//! shapes overlap; flows read left to right except the back edges. Random
//! processes check the layout's properties beyond the fixtures. The Mermaid text of
//! a small process is compared with `tests/expect/diagram-small.mmd`
//! (`UPDATE_EXPECT=1 cargo test --workspace --test diagram` rewrites it).

use nagare_core::compile::CompileOptions;
use nagare_core::diagram::{diagram, mermaid, svg, Diagram, Highlight};
use nagare_core::load::load_str;
use nagare_core::process::Process;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(name: &str, text: &str) -> Process {
    load_str(name, text, &CompileOptions::default()).unwrap_or_else(|d| panic!("{name}: {d:?}")).process
}

/// `processes/*.yaml` and `engine/tests/traces/*/process.yaml`, sorted.
fn fixtures() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(repo().join("processes")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            files.push(p);
        }
    }
    for entry in std::fs::read_dir(repo().join("engine/tests/traces")).unwrap() {
        let p = entry.unwrap().path().join("process.yaml");
        if p.exists() {
            files.push(p);
        }
    }
    files.sort();
    assert!(files.len() > 10, "fixtures not found under {}", repo().display());
    files.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap())).collect()
}

/// A small XML well-formedness check for what the renderer writes: tags balance,
/// attributes are quoted, `&` starts an entity, no `<` or `>` in text.
fn check_xml(s: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("</{name}> without an opening tag"))?;
            if top != name.trim() {
                return Err(format!("<{top}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().ok_or("empty tag")?;
        check_attributes(&body[name.len()..])?;
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> never closed"));
    }
    Ok(())
}

fn check_text(t: &str) -> Result<(), String> {
    if t.contains('>') {
        return Err(format!("`>` in text: {t}"));
    }
    let mut parts = t.split('&');
    parts.next();
    for p in parts {
        let entity = p.split(';').next().unwrap_or("");
        if !(["amp", "lt", "gt", "quot"].contains(&entity) || entity.starts_with('#')) || !p.contains(';') {
            return Err(format!("bad entity in `{t}`"));
        }
    }
    Ok(())
}

fn check_attributes(mut a: &str) -> Result<(), String> {
    loop {
        a = a.trim_start();
        if a.is_empty() {
            return Ok(());
        }
        let eq = a.find('=').ok_or(format!("attribute without a value: {a}"))?;
        let rest = &a[eq + 1..];
        let q = rest.chars().next().ok_or("attribute without a value")?;
        if q != '"' {
            return Err(format!("unquoted attribute: {a}"));
        }
        let end = rest[1..].find('"').ok_or("unterminated attribute")? + 1;
        let value = &rest[1..end];
        if value.contains('<') {
            return Err(format!("`<` in an attribute: {value}"));
        }
        check_text(value)?;
        a = &rest[end + 1..];
    }
}

/// Shapes' boxes (with their labels' room below events) do not overlap.
fn check_no_overlap(name: &str, d: &Diagram) {
    let rect = |i: usize| {
        let n = &d.nodes[i];
        (n.x - n.hw, n.y - n.hh, n.x + n.hw, n.y + n.hh)
    };
    for i in 0..d.nodes.len() {
        let a = rect(i);
        for j in i + 1..d.nodes.len() {
            let b = rect(j);
            let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
            assert!(apart, "{name}: `{}` and `{}` overlap", d.nodes[i].id, d.nodes[j].id);
        }
    }
}

/// Every node at its own place, inside its lane's band; forward edges left to right.
fn check_layout(name: &str, p: &Process, d: &Diagram) {
    let mut places: Vec<(i32, i32)> = d.nodes.iter().map(|n| (n.x, n.y)).collect();
    places.sort_unstable();
    places.dedup();
    assert_eq!(places.len(), d.nodes.len(), "{name}: two nodes share a place");
    for (n, node) in d.nodes.iter().zip(&p.nodes) {
        let band = &d.bands[n.band];
        assert_eq!(band.key, node.lane, "{name}: `{}` drawn outside its lane", n.id);
        assert!(n.y - n.hh > band.y && n.y + n.hh < band.y + band.height, "{name}: `{}` leaves its band", n.id);
        assert!(n.x + n.hw < d.width && n.y + n.hh < d.height);
    }
    for (e, edge) in d.edges.iter().enumerate() {
        let (a, b) = (&d.nodes[edge.from], &d.nodes[edge.to]);
        if d.back[e] {
            assert!(b.layer <= a.layer, "{name}: back edge {} -> {} goes right", a.id, b.id);
        } else {
            assert!(b.layer > a.layer && b.x > a.x, "{name}: {} -> {} does not go right", a.id, b.id);
        }
    }
    // Only edges on a cycle are back edges: the target reaches the source.
    for (e, edge) in d.edges.iter().enumerate().filter(|(e, _)| d.back[*e]) {
        assert!(reaches(p, edge.to, edge.from), "{name}: edge {e} is marked back but closes no loop");
    }
}

fn reaches(p: &Process, from: usize, to: usize) -> bool {
    let mut seen = vec![false; p.nodes.len()];
    let mut todo = vec![from];
    while let Some(v) = todo.pop() {
        if v == to {
            return true;
        }
        if std::mem::replace(&mut seen[v], true) {
            continue;
        }
        todo.extend(p.nodes[v].kind.successors());
    }
    false
}

#[test]
fn every_fixture_renders_well_formed_deterministic_and_complete() {
    for (name, text) in fixtures() {
        let p = load(&name, &text);
        let d = diagram(&p);
        let first = svg(&d, &Highlight::default());
        let again = svg(&diagram(&load(&name, &text)), &Highlight::default());
        assert_eq!(first, again, "{name}: two renderings differ");
        check_xml(&first).unwrap_or_else(|e| panic!("{name}: {e}"));
        for node in &p.nodes {
            let attr = format!("data-node=\"{}\"", xml_attr(&node.id));
            assert!(first.contains(&attr), "{name}: node `{}` missing", node.id);
        }
        for (key, lane) in &p.lanes {
            assert!(first.contains(&format!("data-lane=\"{}\"", xml_attr(key))), "{name}: lane `{key}` missing");
            let shown = if lane.name.is_empty() { key } else { &lane.name };
            assert!(first.contains(&format!("<title>{}</title>", xml_attr(shown))), "{name}: lane name `{shown}`");
        }
        check_layout(&name, &p, &d);
        check_no_overlap(&name, &d);
        let m = mermaid(&d);
        assert!(m.starts_with("flowchart LR\n"));
        assert_eq!(m.matches("subgraph ").count(), p.lanes.len(), "{name}");
    }
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[test]
fn an_instance_path_and_its_current_nodes_are_marked() {
    let text = std::fs::read_to_string(repo().join("processes/expense-approval.yaml")).unwrap();
    let p = load("expense-approval.yaml", &text);
    let d = diagram(&p);
    let hl = Highlight::new(["申請", "上長承認", "金額判定", "承認記録", "経理処理", "消費税計算"], ["領収書確認"]);
    let s = svg(&d, &hl);
    check_xml(&s).unwrap();
    assert!(s.contains("class=\"node task user visited current\" data-node=\"領収書確認\""));
    assert!(s.contains("class=\"node task user visited\" data-node=\"上長承認\""));
    assert!(s.contains("class=\"node task user\" data-node=\"部長承認\""), "not visited: no class");
    assert!(s.contains("class=\"edge taken\" data-from=\"申請\" data-to=\"上長承認\""));
    assert!(s.contains("class=\"edge default taken\" data-from=\"金額判定\" data-to=\"承認記録\""));
    assert!(s.contains("class=\"edge\" data-from=\"金額判定\" data-to=\"部長承認\""));
    assert!(s.contains("class=\"edge send-back\" data-from=\"上長承認\" data-to=\"申請\""), "never sent back");
    let sent = svg(&d, &hl.clone().with_sent_back(["上長承認"]));
    assert!(sent.contains("class=\"edge send-back taken\" data-from=\"上長承認\" data-to=\"申請\""));
    assert_ne!(s, svg(&d, &Highlight::default()));
}

const SMALL: &str = r#"
id: small
name: 小さな "申請" <テスト>
lanes:
  staff: { name: 申請者, groups: [staff] }
  boss: { groups: [managers] }
variables:
  金額: { type: number }
  宛先: { type: list }
start: { name: 申請, next: apply }
nodes:
  apply: { name: 申請する, user_task: 申請, lane: staff, form: { 金額: required }, next: approve }
  approve:
    name: 承認する
    user_task: 承認
    lane: boss
    send_back: apply
    outcomes: { reject: rejected }
    boundary:
      - { timer: 3d, interrupting: false, next: remind }
    next: big
  big:
    exclusive:
      - { when: 金額 >= 50000, next: notify }
    default: done
  notify: { service: echo, multi_instance: { for_each: 宛先, as: 宛, sequential: true }, next: wait }
  wait: { timer: 1h, next: done }
  remind: { script: "let x = 1;", lane: boss, next: reminded }
  reminded: { end: }
  done: { name: 完了, end: }
  rejected: { name: 却下, end: terminate }
"#;

#[test]
fn mermaid_of_a_small_process_is_as_expected() {
    let got = mermaid(&diagram(&load("small.yaml", SMALL)));
    let path = repo().join("engine/core/tests/expect/diagram-small.mmd");
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{} differs; run `UPDATE_EXPECT=1 cargo test --workspace --test diagram` and review.\n--- got ---\n{got}",
        path.display()
    );
}

/// The layout of the small process as an outline (bands, each node's shape, band,
/// layer, row and centre, each edge with its style, direction and route), kept in
/// `tests/expect/diagram-small-layout.txt`: a change of layout shows in review.
#[test]
fn layout_of_a_small_process_is_as_expected() {
    use std::fmt::Write;
    let d = diagram(&load("small.yaml", SMALL));
    let mut got = String::new();
    for b in &d.bands {
        let _ = writeln!(got, "band {:?} {:?} y={} h={}", b.key, b.title, b.y, b.height);
    }
    for n in &d.nodes {
        let _ = writeln!(
            got,
            "node {} [{}] band={} layer={} row={} at=({},{})",
            n.id,
            n.shape.class(),
            n.band,
            n.layer,
            n.row,
            n.x,
            n.y
        );
    }
    for (e, edge) in d.edges.iter().enumerate() {
        let _ = writeln!(
            got,
            "edge {} -> {} {:?}{} label={:?} route={:?}",
            d.nodes[edge.from].id,
            d.nodes[edge.to].id,
            edge.style,
            if d.back[e] { " back" } else { "" },
            edge.label,
            nagare_core::diagram::route(&d, e)
        );
    }
    let path = repo().join("engine/core/tests/expect/diagram-small-layout.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{} differs; run `UPDATE_EXPECT=1 cargo test --workspace --test diagram` and review.\n--- got ---\n{got}",
        path.display()
    );
}

#[test]
fn svg_of_a_small_process_has_the_expected_shapes() {
    let s = svg(&diagram(&load("small.yaml", SMALL)), &Highlight::default());
    check_xml(&s).unwrap();
    assert!(s.contains("小さな &quot;申請&quot; &lt;テスト&gt;"), "title escaped");
    assert!(s.contains("font-family=\"'Hiragino Kaku Gothic ProN'"));
    for class in [
        "event start",
        "task user",
        "task service",
        "task script",
        "gateway exclusive",
        "event catch timer",
        "event end",
    ] {
        assert!(s.contains(&format!("class=\"node {class}")), "no {class}");
    }
    assert!(s.contains("class=\"edge send-back\" data-from=\"approve\" data-to=\"apply\""));
    assert!(s.contains("stroke-dasharray=\"6 4\""), "send-back dashed");
    assert!(s.contains("class=\"edge boundary\" data-from=\"approve\" data-to=\"remind\""));
    assert!(s.contains(">金額 &gt;= 50000</text>"), "condition label escaped");
    assert!(s.contains(">reject</text>"));
    assert_eq!(s.matches("<path class=\"multi\"").count(), 1, "the multi-instance marker on `notify` only");
    assert!(!s.contains("<style") && !s.contains("style=") && !s.contains("<script"), "no inline style or script");
}

/// SplitMix64, so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random valid process: a chain of user tasks and exclusive gateways (so every
/// node is reachable and reaches the end), plus random outcomes and branches
/// forward, send-backs and branches back to user tasks (every loop waits); tasks
/// in random lanes, gateways in none.
fn random_process(seed: u64) -> String {
    let mut r = Rng(seed);
    let n = 3 + r.below(14);
    let is_task: Vec<bool> = (0..n).map(|i| i == 0 || r.below(3) != 0).collect();
    let tasks: Vec<usize> = (0..n).filter(|&i| is_task[i]).collect();
    let name = |i: usize| if i == n { "end".to_string() } else { format!("n{i}") };
    let mut y = String::from(
        "id: random\nlanes:\n  a: { groups: [g] }\n  b: { groups: [g] }\n  c: { groups: [g] }\nvariables:\n  x: { type: number }\nstart: { next: n0 }\nnodes:\n",
    );
    for (i, &task) in is_task.iter().enumerate() {
        let lane = format!(", lane: {}", ["a", "b", "c"][r.below(3)]);
        let later = |r: &mut Rng| name(i + 1 + r.below(n - i));
        if task {
            let mut extra = String::new();
            if r.below(2) == 0 {
                extra.push_str(&format!(", outcomes: {{ o: {} }}", later(&mut r)));
            }
            let earlier: Vec<usize> = tasks.iter().copied().filter(|&t| t <= i).collect();
            if r.below(3) == 0 {
                extra.push_str(&format!(", send_back: {}", name(earlier[r.below(earlier.len())])));
            }
            y.push_str(&format!("  n{i}: {{ user_task: t{i}{lane}{extra}, next: {} }}\n", name(i + 1)));
        } else {
            let mut branches = Vec::new();
            for _ in 0..1 + r.below(3) {
                let to = if r.below(3) == 0 { name(tasks[r.below(tasks.len())]) } else { later(&mut r) };
                branches.push(format!("{{ when: x > {}, next: {to} }}", r.below(100)));
            }
            y.push_str(&format!("  n{i}: {{ exclusive: [{}], default: {} }}\n", branches.join(", "), name(i + 1)));
        }
    }
    y.push_str("  end: { end: }\n");
    y
}

#[test]
fn random_processes_lay_out_with_distinct_places_and_left_to_right_flows() {
    let mut drawn = 0;
    for seed in 0..300u64 {
        let text = random_process(seed);
        // A few draws are not valid processes (a gateway whose branches all lead
        // to one node is fine; a branch to itself is not): skip those.
        let Ok(loaded) = load_str("random.yaml", &text, &CompileOptions::default()) else { continue };
        let p = loaded.process;
        let d = diagram(&p);
        let name = format!("seed {seed}\n{text}");
        check_layout(&name, &p, &d);
        check_no_overlap(&name, &d);
        check_xml(&svg(&d, &Highlight::default())).unwrap_or_else(|e| panic!("{name}: {e}"));
        drawn += 1;
    }
    assert!(drawn > 200, "only {drawn} random processes were valid");
}

/// The well-formedness check itself finds what it looks for.
#[test]
fn the_xml_check_rejects_broken_markup() {
    assert!(check_xml("<a><b/></a>").is_ok());
    for bad in ["<a><b></a>", "<a>", "<a x=1/>", "<a>x & y</a>", "<a>1 > 0</a>", "</a>", "<a x=\"<\"/>"] {
        assert!(check_xml(bad).is_err(), "{bad} passed");
    }
}

use super::*;
use crate::compile::CompileOptions;
use crate::load::load_str;

fn process(yaml: &str) -> Process {
    load_str("t.yaml", yaml, &CompileOptions::default()).unwrap_or_else(|d| panic!("{d:?}")).process
}

const LOOP: &str = r#"
id: loop
name: ループ <&>
lanes:
  a: { name: 申請者, groups: [g] }
  b: { name: 承認者, groups: [g] }
variables:
  ok: { type: bool }
start: { next: ask }
nodes:
  ask: { user_task: 申請, lane: a, form: { ok: optional }, next: check }
  check:
    user_task: 確認
    lane: b
    send_back: ask
    outcomes: { reject: no }
    boundary:
      - { timer: 3d, interrupting: false, next: remind }
    next: ok?
  ok?:
    exclusive:
      - { when: ok, next: yes }
    default: ask
  remind: { script: "let x = 1;", next: done }
  done: { end: }
  yes: { end: }
  no: { end: terminate }
"#;

#[test]
fn back_edges_are_the_loops_and_the_rest_goes_right() {
    let p = process(LOOP);
    let d = diagram(&p);
    for (e, edge) in d.edges.iter().enumerate() {
        let (a, b) = (&d.nodes[edge.from], &d.nodes[edge.to]);
        if d.back[e] {
            assert!(b.layer <= a.layer, "{} -> {}", a.id, b.id);
        } else {
            assert!(b.layer > a.layer, "{} -> {}", a.id, b.id);
            assert!(b.x > a.x);
        }
    }
    let back: Vec<(&str, &str)> = d
        .edges
        .iter()
        .zip(&d.back)
        .filter(|(_, b)| **b)
        .map(|(e, _)| (d.nodes[e.from].id.as_str(), d.nodes[e.to].id.as_str()))
        .collect();
    assert_eq!(back, [("check", "ask"), ("ok?", "ask")]);
}

#[test]
fn svg_escapes_labels_and_marks_an_instance() {
    let p = process(LOOP);
    let d = diagram(&p);
    let plain = svg(&d, &Highlight::default());
    assert!(plain.contains("ループ &lt;&amp;&gt;"));
    assert!(!plain.contains("visited"));
    let hl = Highlight::new(["ask", "check"], ["check"]);
    let marked = svg(&d, &hl);
    assert!(marked.contains("class=\"node task user visited current\" data-node=\"check\""), "{marked}");
    assert!(marked.contains("class=\"node task user visited\" data-node=\"ask\""));
    assert!(marked.contains("class=\"node event start visited\" data-node=\"start\""));
    assert!(marked.contains("class=\"edge taken\" data-from=\"ask\" data-to=\"check\""));
    assert!(marked.contains("class=\"edge\" data-from=\"check\" data-to=\"ok?\""));
}

fn main() {
    let f = std::env::args().nth(1).unwrap();
    let t = std::fs::read_to_string(&f).unwrap();
    match nagare_engine::load::load_str(&f, &t, &Default::default()) {
        Ok(l) => println!("ok {} nodes, warnings:\n{}", l.process.nodes.len(), l.warnings),
        Err(d) => println!("{d}"),
    }
}

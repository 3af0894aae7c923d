//! weft-model's import rule (docs/architecture.md): the vocabulary (values,
//! diagnostics, the API types) at the bottom, then decoding and the kind
//! table, validation, loading, the internal model, and analysis on top.

const LAYERS: &[&[&str]] = &[
    &["values"],
    &["diag", "types"],
    &["envelope"],
    &["resource"],
    &["validate"],
    &["load"],
    &["mesh"],
    &["analyze"],
];

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = weft_testkit::layers::graph(&src).unwrap();
    assert!(graph.len() >= 8, "the source tree was not read: {graph:?}");
    assert_eq!(weft_testkit::layers::cycle(&graph), None, "an import circle");
    let broken = weft_testkit::layers::violations(&graph, LAYERS);
    assert!(broken.is_empty(), "import rule broken:\n{}\n{graph:?}", broken.join("\n"));
}

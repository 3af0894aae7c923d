//! Keeps `docs/configuration.md` in step with the code: every message code
//! is documented with its severity and Istio equivalent.

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md")).unwrap();
    for code in weft_model::Code::ALL {
        let row = format!(
            "| {} | {} | {} | {} |",
            code.id(),
            code.severity(),
            code.istio_code().unwrap_or("-"),
            code.title()
        );
        assert!(doc.contains(&row), "docs/configuration.md lacks the row:\n{row}");
    }
}

//! The configuration corpus under `tests/corpus`: realistic configurations
//! in the style of the Istio, Linkerd and Gateway API docs must parse and
//! analyze clean; each broken one must produce exactly the codes its
//! `# expect:` header lists.

use std::path::{Path, PathBuf};
use weft_model::analyze::{analyze, Options};

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus").join(dir)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn messages(paths: &[PathBuf]) -> (usize, Vec<weft_model::Message>) {
    let bundle = weft_model::load_paths(paths);
    let mut msgs = bundle.messages;
    msgs.extend(analyze(&bundle.resources, &Options::default()));
    (bundle.resources.len(), msgs)
}

#[test]
fn realistic_configurations_analyze_clean() {
    let files = yaml_files(&corpus("valid"));
    assert!(files.len() >= 8, "the valid corpus has shrunk: {files:?}");
    for f in &files {
        let (n, msgs) = messages(std::slice::from_ref(f));
        assert!(n > 0, "{} parsed to nothing", f.display());
        // Correct configuration that weft's proxy does not apply yet is reported (WEFT0122),
        // but it is not a problem with the configuration.
        let msgs: Vec<_> = msgs.into_iter().filter(|m| m.code != weft_model::Code::NotAppliedYet).collect();
        let text: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
        assert!(text.is_empty(), "{} should analyze clean, got:\n{}", f.display(), text.join("\n"));
    }
    // All together too: cross-file analysis must not find conflicts between them.
    let (_, msgs) = messages(&[corpus("valid")]);
    let msgs: Vec<_> = msgs.into_iter().filter(|m| m.code != weft_model::Code::NotAppliedYet).collect();
    assert!(msgs.is_empty(), "{msgs:#?}");
}

#[test]
fn the_readme_examples_analyze_clean() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (n, msgs) = messages(&[examples]);
    assert!(n > 10);
    assert!(msgs.is_empty(), "{msgs:#?}");
}

#[test]
fn every_code_is_exercised_by_the_broken_corpus() {
    let mut all = String::new();
    for f in yaml_files(&corpus("invalid")) {
        all += std::fs::read_to_string(f).unwrap().lines().next().unwrap();
    }
    for code in weft_model::Code::ALL {
        assert!(all.contains(code.id()), "no broken-corpus file expects {code}");
    }
}

#[test]
fn broken_configurations_report_their_codes() {
    let files = yaml_files(&corpus("invalid"));
    assert!(files.len() >= 20, "the invalid corpus has shrunk: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let header = text.lines().next().unwrap_or("");
        let mut expected: Vec<&str> = header
            .strip_prefix("# expect:")
            .unwrap_or_else(|| panic!("{} lacks an `# expect:` header", f.display()))
            .split_whitespace()
            .collect();
        expected.sort();
        let (_, msgs) = messages(std::slice::from_ref(f));
        let mut got: Vec<&str> = msgs.iter().map(|m| m.code.id()).collect();
        got.sort();
        let detail: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
        assert_eq!(got, expected, "{}:\n{}", f.display(), detail.join("\n"));
        for m in &msgs {
            // Every finding about a resource names it and where it came from.
            assert!(m.resource.is_none() || m.origin.is_some(), "{m} has no origin");
        }
        // The exact text users see, kept beside the input (WEFT_BLESS=1 rewrites it).
        let mut sorted = msgs.clone();
        weft_model::diag::sort_messages(&mut sorted);
        let dir = format!("{}/", f.parent().unwrap().display());
        let rendered: String = sorted.iter().map(|m| m.to_string().replace(&dir, "") + "\n").collect();
        let expected_path = f.with_extension("expected");
        if std::env::var_os("WEFT_BLESS").is_some() {
            std::fs::write(&expected_path, &rendered).unwrap();
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing; run with WEFT_BLESS=1 and review it", expected_path.display()));
        assert_eq!(rendered, want, "messages for {} changed", f.display());
    }
}

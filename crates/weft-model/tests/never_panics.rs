//! Hostile input never panics the parser or the analyzers: arbitrary bytes,
//! and arbitrary YAML shaped like mesh resources (known kinds, known field
//! names, values of every type in every place).

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use weft_model::analyze::{analyze, Options};
use weft_model::resource::KINDS;

fn run(text: &str) {
    let b = weft_model::parse_str("fuzz.yaml", text);
    let _ = analyze(&b.resources, &Options::default());
    for m in &b.messages {
        let _ = m.to_string();
    }
}

/// Field names that appear in mesh resources, so generated documents reach
/// deep into the typed decoders instead of failing at the first key.
const KEYS: &[&str] = &[
    "hosts", "http", "route", "destination", "host", "subset", "weight", "match", "uri", "exact",
    "prefix", "regex", "headers", "timeout", "retries", "attempts", "perTryTimeout", "retryOn",
    "gateways", "subsets", "name", "labels", "trafficPolicy", "loadBalancer", "simple",
    "consistentHash", "httpHeaderName", "connectionPool", "tcp", "maxConnections", "outlierDetection",
    "consecutive5xxErrors", "tls", "mode", "selector", "matchLabels", "mtls", "portLevelMtls", "rules",
    "from", "to", "source", "operation", "principals", "paths", "action", "servers", "port", "number",
    "protocol", "parentRefs", "kind", "group", "backendRefs", "matches", "path", "type", "value",
    "service", "backends", "routes", "condition", "method", "pathRegex", "podSelector", "client",
    "meshTLS", "ports", "targetPort", "spec", "template", "metadata", "status", "podIP", "fault",
    "delay", "abort", "percentage", "fixedDelay", "httpStatus", "mirror", "listeners", "certificateRefs",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "", "a", "reviews", "v1", "10s", "1.5s", "-1s", "300ms", "STRICT", "DISABLE", "ROUND_ROBIN",
            "*", "*.example.com", "(a", "/api/.*", "POST", "Service", "Gateway", "mesh", "ns/gw",
            "10.0.0.0/8", "999999", "http", "grpc", "500m", "\u{0}", "💥",
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    (prop::sample::select(KINDS.to_vec()), any::<prop::sample::Index>(), value(), value()).prop_map(|(k, vi, spec, meta)| {
        let version = k.versions[vi.index(k.versions.len())];
        let api = if k.group.is_empty() { version.to_string() } else { format!("{}/{version}", k.group) };
        let metadata = match meta {
            Value::Object(mut m) => {
                m.insert("name".into(), json!("x"));
                Value::Object(m)
            }
            other => other,
        };
        json!({"apiVersion": api, "kind": k.kind, "metadata": metadata, "spec": spec})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yaml_text_never_panics(text in "[-:{}\\[\\],&*!|>'\"#%@` \n a-z0-9]{0,200}") {
        run(&text);
    }

    #[test]
    fn arbitrary_mesh_shaped_documents_never_panic(docs in prop::collection::vec(document(), 1..6)) {
        let text: Vec<String> = docs.iter().map(|d| serde_norway::to_string(d).unwrap()).collect();
        run(&text.join("---\n"));
    }
}

#[test]
fn billion_laughs_is_refused_not_expanded() {
    let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let mut prev = 'a';
    for name in 'b'..='j' {
        doc.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        prev = name;
    }
    let b = weft_model::parse_str("lol.yaml", &doc);
    assert_eq!(b.messages.len(), 1, "{:?}", b.messages);
    assert_eq!(b.messages[0].code, weft_model::Code::YamlSyntax);
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let doc = "[".repeat(100_000);
    let b = weft_model::parse_str("deep.yaml", &doc);
    assert_eq!(b.messages[0].code, weft_model::Code::YamlSyntax);
}

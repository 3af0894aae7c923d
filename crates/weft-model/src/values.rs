//! Scalar values users write inside resources: durations, ports, label keys
//! and values, regular expressions. Each parser returns a reason a user can
//! act on; callers attach the field path.

use std::time::Duration;

/// Parses a Go/Istio/Gateway-API style duration: one or more `<number><unit>`
/// groups (`10s`, `1.5s`, `300ms`, `1h30m`), units `h m s ms us µs ns`.
/// A bare `0` is accepted, as in Go.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like \"10s\", \"1.5s\" or \"300ms\"".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.starts_with('-') {
        return Err(format!("duration {s:?} is negative"));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "duration {s:?}: expected a number at {rest:?}; write it like \"10s\" or \"300ms\""
            ));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("duration {s:?}: {:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => {
                return Err(format!(
                    "duration {s:?} has no unit; add one of h, m, s, ms (e.g. \"{num}s\")"
                ))
            }
            other => {
                return Err(format!(
                    "duration {s:?} has unknown unit {other:?}; use h, m, s, ms, us or ns"
                ))
            }
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way users write them (`1.5s`, `300ms`, `2m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if d.is_zero() {
        "0s".into()
    } else if d.subsec_nanos() == 0 && d.as_secs().is_multiple_of(3600) {
        format!("{}h", d.as_secs() / 3600)
    } else if d.subsec_nanos() == 0 && d.as_secs().is_multiple_of(60) {
        format!("{}m", d.as_secs() / 60)
    } else if ms >= 1000.0 {
        format!("{}s", trim_float(d.as_secs_f64()))
    } else if ms >= 1.0 {
        format!("{}ms", trim_float(ms))
    } else {
        format!("{}us", trim_float(ms * 1000.0))
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Checks a TCP/UDP port number.
pub fn check_port(p: i64) -> Result<u16, String> {
    if (1..=65535).contains(&p) {
        Ok(p as u16)
    } else {
        Err(format!("port {p} is out of range 1-65535"))
    }
}

/// Checks a percentage in `0..=100`.
pub fn check_percent(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("percentage {v} is out of range 0-100"))
    }
}

/// Compiles a regular expression with RE2 semantics (the Rust `regex` crate
/// implements the same linear-time subset: no backreferences or lookaround).
/// Envoy and Istio match the whole string, so the proxy anchors it.
pub fn check_regex(re: &str) -> Result<(), String> {
    regex::Regex::new(&format!("^(?:{re})$"))
        .map(|_| ())
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            format!("invalid regex {re:?} (RE2 syntax): {last}")
        })
}

/// Is `name` a header field name (RFC 9110 5.1: a token)? A name that is
/// not could never match anything, so a rule written with it would quietly
/// match more (or less) than it says.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() {
        return Err("a header name cannot be empty".into());
    }
    match name.bytes().find(|b| !tchar(*b)) {
        None => Ok(()),
        Some(b) => Err(format!("header name {name:?} is not an HTTP token: {:?} is not allowed in a header name", b as char)),
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Checks a Kubernetes label key: `[prefix/]name`.
pub fn check_label_key(k: &str) -> Result<(), String> {
    let ok = match k.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(k),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not a valid label key (optional DNS prefix and '/', then at most 63 alphanumerics, '-', '_' or '.')"
        ))
    }
}

/// Checks a Kubernetes label value (may be empty).
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a valid label value (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)"
        ))
    }
}

/// Checks a DNS-1123 name as used for `metadata.name` of most objects.
pub fn check_object_name(n: &str) -> Result<(), String> {
    if is_dns_subdomain(n) {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a valid name (lowercase alphanumerics, '-' and '.', at most 253 characters)"
        ))
    }
}

/// Checks a hostname as used in routes: an FQDN or short name, optionally
/// with a leading `*.` wildcard, or `*` alone.
pub fn check_host(h: &str) -> Result<(), String> {
    if h == "*" {
        return Ok(());
    }
    let body = h.strip_prefix("*.").unwrap_or(h);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?} is not a valid host (DNS name, optionally with a leading \"*.\")"
        ))
    }
}

/// Picks the candidate closest to `word`, if any is close enough to be a
/// plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The access-log filters weft evaluates: `response.code >= N` and
/// `response.code > N` (Istio's CEL, the form the docs use). The minimum code logged.
pub fn access_log_code_filter(expression: &str) -> Option<u16> {
    let e: String = expression.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(n) = e.strip_prefix("response.code>=") {
        return n.parse().ok();
    }
    if let Some(n) = e.strip_prefix("response.code>") {
        return n.parse::<u16>().ok()?.checked_add(1);
    }
    None
}

/// The value of a metric `tagOverrides` UPSERT: the attribute expressions
/// weft evaluates (Istio's CEL, for the attributes the common examples use).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TagValue {
    Literal(String),
    RequestPath,
    RequestUrlPath,
    RequestHost,
    RequestMethod,
    RequestHeader(String),
    ResponseCode,
}

/// `request.path`, `request.url_path`, `request.host`, `request.method`,
/// `request.headers['x-name']` (or `["x-name"]`), `response.code`, or a
/// quoted literal (`'v1'`); anything else is refused with the list.
pub fn tag_value(expression: &str) -> Result<TagValue, String> {
    let e = expression.trim();
    let quoted = |s: &str| {
        let b = s.as_bytes();
        (b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0]).then(|| s[1..s.len() - 1].to_string())
    };
    match e {
        "request.path" => return Ok(TagValue::RequestPath),
        "request.url_path" => return Ok(TagValue::RequestUrlPath),
        "request.host" => return Ok(TagValue::RequestHost),
        "request.method" => return Ok(TagValue::RequestMethod),
        "response.code" => return Ok(TagValue::ResponseCode),
        _ => {}
    }
    if let Some(name) = e.strip_prefix("request.headers[").and_then(|r| r.strip_suffix(']')).and_then(quoted) {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Ok(TagValue::RequestHeader(name.to_ascii_lowercase()));
        }
    }
    if let Some(literal) = quoted(e) {
        return Ok(TagValue::Literal(literal));
    }
    Err(format!(
        "weft evaluates request.path, request.url_path, request.host, request.method, request.headers['NAME'], response.code and quoted literals, not {expression:?}"
    ))
}

/// One of Istio's tracing `customTags`: a literal, a request header, or
/// an environment variable of the proxy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TraceTag {
    Literal(String),
    Header { name: String, default_value: Option<String> },
    Environment { name: String, default_value: Option<String> },
}

/// A `customTags` entry (`{literal: {value}}`, `{header: {name, defaultValue}}`
/// or `{environment: {name, defaultValue}}`), or why it is not one.
pub fn trace_tag(v: &serde_json::Value) -> Result<TraceTag, String> {
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or("a custom tag is one of literal, header or environment")?;
    let (kind, body) = obj.iter().next().ok_or("a custom tag is one of literal, header or environment")?;
    let field = |name: &str| body.get(name).and_then(|x| x.as_str()).map(str::to_string);
    let known = |allowed: &[&str]| match body.as_object() {
        Some(o) => match o.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("{kind}.{k} is not a field of a {kind} tag ({})", allowed.join(", "))),
            None => Ok(()),
        },
        None => Err(format!("{kind} is an object")),
    };
    match kind.as_str() {
        "literal" => {
            known(&["value"])?;
            Ok(TraceTag::Literal(field("value").ok_or("literal needs a value")?))
        }
        "header" | "environment" => {
            known(&["name", "defaultValue"])?;
            let name = field("name").filter(|n| !n.is_empty()).ok_or(format!("{kind} needs a name"))?;
            let default_value = field("defaultValue");
            Ok(if kind == "header" { TraceTag::Header { name, default_value } } else { TraceTag::Environment { name, default_value } })
        }
        k => Err(format!("{k:?} is not a kind of custom tag (literal, header or environment)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_users_write() {
        assert_eq!(tag_value("request.host"), Ok(TagValue::RequestHost));
        assert_eq!(tag_value(" request.url_path "), Ok(TagValue::RequestUrlPath));
        assert_eq!(tag_value("request.headers['X-Tenant']"), Ok(TagValue::RequestHeader("x-tenant".into())));
        assert_eq!(tag_value("request.headers[\"user-agent\"]"), Ok(TagValue::RequestHeader("user-agent".into())));
        assert_eq!(tag_value("'blue'"), Ok(TagValue::Literal("blue".into())));
        for bad in ["request.headers[x]", "filter_state['upstream_peer']", "request.size > 10", "'open", "has(request.host) ? 'a' : 'b'"] {
            assert!(tag_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trace_tags_users_write() {
        let tag = |s: &str| trace_tag(&serde_json::from_str(s).unwrap());
        assert_eq!(tag(r#"{"literal": {"value": "blue"}}"#), Ok(TraceTag::Literal("blue".into())));
        assert_eq!(tag(r#"{"header": {"name": "x-user", "defaultValue": "anon"}}"#), Ok(TraceTag::Header { name: "x-user".into(), default_value: Some("anon".into()) }));
        assert_eq!(tag(r#"{"environment": {"name": "POD_NAME"}}"#), Ok(TraceTag::Environment { name: "POD_NAME".into(), default_value: None }));
        assert!(tag(r#"{"cel": {"expr": "x"}}"#).unwrap_err().contains("not a kind"));
        assert!(tag(r#"{"header": {"nam": "x"}}"#).unwrap_err().contains("nam is not a field"));
        assert!(tag(r#"{"literal": {"value": "a"}, "header": {"name": "b"}}"#).is_err());
    }

    #[test]
    fn durations_users_write() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("s").unwrap_err().contains("expected a number"));
        assert!(parse_duration("1..5s").unwrap_err().contains("not a number"));
        assert!(parse_duration("99999999999h").unwrap_err().contains("out of range"));
    }

    #[test]
    fn durations_format_back() {
        for s in ["10s", "1.5s", "300ms", "1h", "2m", "250us"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn ports_and_percents() {
        assert_eq!(check_port(8080), Ok(8080));
        assert!(check_port(0).is_err());
        assert!(check_port(70000).is_err());
        assert!(check_percent(100.0).is_ok());
        assert!(check_percent(100.5).is_err());
        assert!(check_percent(f64::NAN).is_err());
    }

    #[test]
    fn regexes_follow_re2() {
        assert!(check_regex("/api/v[0-9]+/.*").is_ok());
        assert!(check_regex("(a").unwrap_err().contains("RE2"));
        // Backreferences are not RE2.
        assert!(check_regex(r"(a)\1").is_err());
    }

    #[test]
    fn labels() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1").is_ok());
        assert!(check_label_value("v1 beta").is_err());
    }

    #[test]
    fn hosts() {
        assert!(check_host("reviews").is_ok());
        assert!(check_host("*.example.com").is_ok());
        assert!(check_host("*").is_ok());
        assert!(check_host("a..b").is_err());
        assert!(check_host("bad host").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("weigth", ["destination", "weight", "headers"]), Some("weight"));
        assert_eq!(closest("perTryTimout", ["attempts", "perTryTimeout"]), Some("perTryTimeout"));
        assert_eq!(closest("zzz", ["destination", "weight"]), None);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

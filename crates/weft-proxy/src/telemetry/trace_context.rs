//! Trace context in request headers: what a request says about the trace
//! it is part of (W3C `traceparent`, B3 in its multi-header and
//! single-header forms), this proxy's span within it, and the headers the
//! next hop gets. Pure functions; `tracestate` is passed on untouched.
//!
//! W3C's `traceparent` is always written; B3's headers when the request
//! came with them (in the form it used) or when spans go to Zipkin, whose
//! users' apps propagate B3, as Envoy's Zipkin tracer does. Writing only
//! what is needed keeps every hop's headers (and their parsing) small.

use http::{HeaderMap, HeaderValue};

/// What a request's headers say, when they say anything valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The trace and the caller's span; none for a B3 "sampling only" header.
    pub parent: Option<(u128, u64)>,
    /// The caller's sampling decision, followed when present.
    pub sampled: Option<bool>,
    /// It came in B3 form: the single `b3` header, or the `x-b3-*` ones
    /// (written back in that form too).
    pub b3: Option<B3>,
}

/// The B3 form a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3 {
    Single,
    Multi,
}

/// Which headers the next hop gets beside `traceparent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forms {
    pub b3_multi: bool,
    pub b3_single: bool,
    /// B3 headers are there that must not reach the next hop with stale ids.
    pub clear_b3: bool,
}

impl Forms {
    /// What to write for a request whose headers held `seen`, `b3_always` when spans go to Zipkin.
    pub fn for_request(seen: &Seen, b3_always: bool) -> Forms {
        let b3 = seen.incoming.and_then(|i| i.b3);
        Forms { b3_multi: b3_always || b3 == Some(B3::Multi), b3_single: b3 == Some(B3::Single), clear_b3: seen.b3_headers }
    }
}

/// This proxy's span in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent: Option<u64>,
    pub sampled: bool,
}

/// What a request's headers hold of trace context, read in one pass (the
/// request path does this for every request while tracing is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub incoming: Option<Incoming>,
    /// Some B3 header is there (to be rewritten or removed).
    pub b3_headers: bool,
}

/// The trace context in `headers`: `traceparent` first, then `b3`, then
/// the `x-b3-*` headers. Malformed values are ignored (a new trace starts).
pub fn read(headers: &HeaderMap) -> Seen {
    let (mut traceparent, mut single, mut trace, mut span, mut sampled, mut flags) = (None, None, None, None, None, None);
    let mut b3_headers = false;
    for (name, value) in headers {
        let n = name.as_str();
        if n == "traceparent" {
            traceparent = Some(value);
        } else if n == "b3" {
            single = Some(value);
            b3_headers = true;
        } else if let Some(rest) = n.strip_prefix("x-b3-") {
            b3_headers = true;
            match rest {
                "traceid" => trace = Some(value),
                "spanid" => span = Some(value),
                "sampled" => sampled = Some(value),
                "flags" => flags = Some(value),
                _ => {}
            }
        }
    }
    fn text(v: Option<&HeaderValue>) -> Option<&str> {
        v.and_then(|v| v.to_str().ok()).map(str::trim)
    }
    let incoming = text(traceparent).and_then(w3c).or_else(|| text(single).and_then(b3_single)).or_else(|| {
        let sampled = match (text(flags), text(sampled)) {
            (Some("1"), _) => Some(true),
            (_, Some("1" | "true")) => Some(true),
            (_, Some("0" | "false")) => Some(false),
            _ => None,
        };
        let parent = match (text(trace).and_then(trace_id), text(span).and_then(span_id)) {
            (Some(t), Some(s)) => Some((t, s)),
            _ => None,
        };
        (parent.is_some() || sampled.is_some()).then_some(Incoming { parent, sampled, b3: Some(B3::Multi) })
    });
    Seen { incoming, b3_headers }
}

/// `version-traceid-parentid-flags`; a later version's extra fields are ignored, as the spec says.
fn w3c(v: &str) -> Option<Incoming> {
    let mut parts = v.split('-');
    let version = parts.next().filter(|p| p.len() == 2 && p != &"ff")?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok().filter(|_| flags.len() == 2)?;
    let (t, s) = (trace_id(trace).filter(|_| trace.len() == 32)?, span_id(span)?);
    Some(Incoming { parent: Some((t, s)), sampled: Some(flags & 1 == 1), b3: None })
}

/// `traceid-spanid[-sampled[-parentspanid]]`, or just the decision (`0`, `1`, `d`).
fn b3_single(v: &str) -> Option<Incoming> {
    let decision = |d: &str| match d {
        "1" | "d" => Some(Some(true)),
        "0" => Some(Some(false)),
        _ => None,
    };
    let mut parts = v.split('-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        return Some(Incoming { parent: None, sampled: decision(first)?, b3: Some(B3::Single) });
    };
    let (t, s) = (trace_id(first)?, span_id(second)?);
    let sampled = match parts.next() {
        Some(d) => decision(d)?,
        None => None,
    };
    Some(Incoming { parent: Some((t, s)), sampled, b3: Some(B3::Single) })
}

/// 16 or 32 lowercase hex digits, not all zero (B3 allows 64-bit trace ids).
fn trace_id(s: &str) -> Option<u128> {
    if (s.len() != 16 && s.len() != 32) || !is_lower_hex(s) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|t| *t != 0)
}

fn span_id(s: &str) -> Option<u64> {
    if s.len() != 16 || !is_lower_hex(s) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|t| *t != 0)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// This proxy's span: a child of the caller's when there is one (its
/// decision followed), else the root of a new trace sampled when `sample`
/// says so. `random` makes the ids.
pub fn child(incoming: Option<&Incoming>, sample: impl FnOnce() -> bool, mut random: impl FnMut() -> u64) -> SpanIds {
    let mut span_id = || loop {
        let id = random();
        if id != 0 {
            break id;
        }
    };
    let sampled = incoming.and_then(|i| i.sampled).unwrap_or_else(sample);
    match incoming.and_then(|i| i.parent) {
        Some((trace_id, parent)) => SpanIds { trace_id, span_id: span_id(), parent: Some(parent), sampled },
        None => {
            let trace_id = ((span_id() as u128) << 64) | span_id() as u128;
            SpanIds { trace_id, span_id: span_id(), parent: None, sampled }
        }
    }
}

/// Writes `ids` as the context the next hop sees (this span is its parent),
/// in W3C form and the B3 `forms`; stale B3 headers are removed.
pub fn inject(headers: &mut HeaderMap, ids: &SpanIds, forms: Forms) {
    let flag = if ids.sampled { b'1' } else { b'0' };
    let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(&mut tp[3..35], ids.trace_id);
    hex_into(&mut tp[36..52], ids.span_id as u128);
    tp[54] = flag;
    headers.insert("traceparent", value(&tp));
    if forms.b3_multi {
        headers.insert("x-b3-traceid", value(&tp[3..35]));
        headers.insert("x-b3-spanid", value(&tp[36..52]));
        headers.insert("x-b3-sampled", HeaderValue::from_static(if ids.sampled { "1" } else { "0" }));
        headers.remove("x-b3-flags");
        match ids.parent {
            Some(p) => {
                let mut h = [0u8; 16];
                hex_into(&mut h, p as u128);
                headers.insert("x-b3-parentspanid", value(&h));
            }
            None => {
                headers.remove("x-b3-parentspanid");
            }
        }
    } else if forms.clear_b3 {
        for h in ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"] {
            headers.remove(h);
        }
    }
    if forms.b3_single {
        // TRACE-SPAN-FLAG[-PARENT]
        let mut b = [0u8; 68];
        b[..32].copy_from_slice(&tp[3..35]);
        b[32] = b'-';
        b[33..49].copy_from_slice(&tp[36..52]);
        b[49] = b'-';
        b[50] = flag;
        let len = match ids.parent {
            Some(p) => {
                b[51] = b'-';
                hex_into(&mut b[52..68], p as u128);
                68
            }
            None => 51,
        };
        headers.insert("b3", value(&b[..len]));
    } else if forms.clear_b3 {
        headers.remove("b3");
    }
}

/// Lowercase hex of the low `out.len() * 4` bits of `v`, filling `out`.
fn hex_into(out: &mut [u8], mut v: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(headers: &HeaderMap) -> Option<Incoming> {
        read(headers).incoming
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const SPAN: u64 = 0x00f067aa0ba902b7;

    #[test]
    fn w3c_traceparent_gives_trace_parent_and_decision() {
        let i = extract(&headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])).unwrap();
        assert_eq!(i, Incoming { parent: Some((TRACE, SPAN)), sampled: Some(true), b3: None });
        let off = extract(&headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")])).unwrap();
        assert_eq!(off.sampled, Some(false));
        // A later version may add fields; version 00 may not.
        assert!(extract(&headers(&[("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")])).is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "garbage",
        ] {
            assert_eq!(extract(&headers(&[("traceparent", bad)])), None, "{bad}");
        }
    }

    #[test]
    fn b3_multi_and_single_headers_and_their_sampling_only_forms() {
        let multi = extract(&headers(&[("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7"), ("x-b3-sampled", "1")])).unwrap();
        assert_eq!(multi, Incoming { parent: Some((0xa3ce929d0e0e4736, SPAN)), sampled: Some(true), b3: Some(B3::Multi) });
        let debug = extract(&headers(&[("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7"), ("x-b3-flags", "1")])).unwrap();
        assert_eq!(debug.sampled, Some(true));
        assert_eq!(extract(&headers(&[("x-b3-sampled", "0")])), Some(Incoming { parent: None, sampled: Some(false), b3: Some(B3::Multi) }));
        let single = extract(&headers(&[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90")])).unwrap();
        assert_eq!(single, Incoming { parent: Some((TRACE, SPAN)), sampled: Some(true), b3: Some(B3::Single) });
        let deferred = extract(&headers(&[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")])).unwrap();
        assert_eq!(deferred.sampled, None);
        assert_eq!(extract(&headers(&[("b3", "0")])).unwrap().sampled, Some(false));
        assert_eq!(extract(&headers(&[("b3", "x")])), None);
        // W3C wins over B3 when both are there.
        let both = extract(&headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), ("x-b3-sampled", "1")])).unwrap();
        assert_eq!(both.sampled, Some(false));
    }

    #[test]
    fn a_child_follows_its_parent_and_a_root_follows_the_sampler() {
        let mut n = 0u64;
        let mut ids = || {
            n += 1;
            n
        };
        let parent = Incoming { parent: Some((TRACE, SPAN)), sampled: Some(false), b3: None };
        let c = child(Some(&parent), || panic!("a decision in the headers is followed"), &mut ids);
        assert_eq!(c, SpanIds { trace_id: TRACE, span_id: 1, parent: Some(SPAN), sampled: false });
        let root = child(None, || true, &mut ids);
        assert_eq!((root.trace_id, root.span_id, root.parent, root.sampled), ((2u128 << 64) | 3, 4, None, true));
        // B3's deferred decision: the ids are the caller's, the decision is ours.
        let deferred = Incoming { sampled: None, ..parent };
        assert!(child(Some(&deferred), || true, &mut ids).sampled);
    }

    #[test]
    fn the_next_hop_sees_this_span_as_its_parent_in_every_form() {
        let mut h = headers(&[("b3", "x"), ("x-b3-flags", "1"), ("tracestate", "vendor=1")]);
        let ids = SpanIds { trace_id: TRACE, span_id: 0xabc, parent: Some(SPAN), sampled: true };
        inject(&mut h, &ids, Forms { b3_multi: true, b3_single: true, clear_b3: true });
        assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
        assert_eq!(h["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h["x-b3-spanid"], "0000000000000abc");
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(h["b3"], "4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-1-00f067aa0ba902b7");
        assert_eq!(h["tracestate"], "vendor=1");
        assert!(!h.contains_key("x-b3-flags"));
        // What was written reads back as this span.
        let back = extract(&h).unwrap();
        assert_eq!(back.parent, Some((TRACE, 0xabc)));
        let root = SpanIds { parent: None, sampled: false, ..ids };
        inject(&mut h, &root, Forms { b3_multi: true, b3_single: false, clear_b3: true });
        assert!(!h.contains_key("b3") && !h.contains_key("x-b3-parentspanid"));
        assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-00");
        assert_eq!(h["x-b3-sampled"], "0");
        // W3C only: the B3 headers a caller sent do not linger with stale ids.
        let forms = Forms::for_request(&read(&h), false);
        inject(&mut h, &root, forms);
        assert!(h.keys().all(|k| !k.as_str().starts_with("x-b3-") && k != "b3"), "{h:?}");
        assert_eq!(h["tracestate"], "vendor=1");
    }

    #[test]
    fn b3_is_written_back_in_the_form_it_came_and_always_for_zipkin() {
        let seen = |pairs: &[(&'static str, &str)]| read(&headers(pairs));
        let single = seen(&[("b3", "1")]);
        assert_eq!(Forms::for_request(&single, false), Forms { b3_multi: false, b3_single: true, clear_b3: true });
        let multi = seen(&[("x-b3-sampled", "1")]);
        assert_eq!(Forms::for_request(&multi, false), Forms { b3_multi: true, b3_single: false, clear_b3: true });
        let w3c = seen(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
        assert_eq!(Forms::for_request(&w3c, false), Forms::default());
        // W3C first, but the stale B3 headers beside it go.
        let both = seen(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("x-b3-spanid", "00f067aa0ba902b7")]);
        assert_eq!(Forms::for_request(&both, false), Forms { b3_multi: false, b3_single: false, clear_b3: true });
        assert_eq!(Forms::for_request(&seen(&[]), true), Forms { b3_multi: true, b3_single: false, clear_b3: false });
    }
}

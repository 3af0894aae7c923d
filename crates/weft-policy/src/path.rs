//! Request paths as policy sees them, and as the app then receives them:
//! Istio's `pathNormalization` (BASE resolves `.`/`..` and decodes
//! unreserved characters; MERGE_SLASHES also merges `//`;
//! DECODE_AND_MERGE_SLASHES first decodes `%2F`/`%5C`). Normalising once
//! and forwarding the normalised path means `/api/../admin` cannot pass a
//! rule for `/api/*` and then reach `/admin`. The query is never matched.

use std::borrow::Cow;
use weft_proto::authz::PathNormalization;

/// A path no normalisation can make safe: the request gets a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request path {0:?}")]
pub struct InvalidPath(pub String);

/// Splits `path?query` and normalises the path; borrows when nothing changes.
pub fn normalize(path_and_query: &str, mode: PathNormalization) -> Result<(Cow<'_, str>, Option<&str>), InvalidPath> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if mode == PathNormalization::None {
        return Ok((Cow::Borrowed(path), query));
    }
    if !path.starts_with('/') {
        // `*` (OPTIONS) and absolute forms are left alone: they match no path rule but `*`.
        return Ok((Cow::Borrowed(path), query));
    }
    let decode_slashes = mode == PathNormalization::DecodeAndMergeSlashes;
    let merge = matches!(mode, PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes);
    let needs_work = path.contains('%') || path.contains("/.") || (merge && path.contains("//")) || path.contains('\\') && decode_slashes;
    if !needs_work {
        return Ok((Cow::Borrowed(path), query));
    }
    let decoded = decode(path, decode_slashes).ok_or_else(|| InvalidPath(path.to_string()))?;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            "" if merge && i != last => {}
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    Ok((Cow::Owned(result), query))
}

/// Percent-decodes unreserved characters (RFC 3986 2.3), and `/` `\` when
/// asked; everything else stays encoded. A malformed escape is refused.
fn decode(path: &str, slashes: bool) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            let unreserved = v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~');
            if unreserved || (slashes && (v == b'/' || v == b'\\')) {
                out.push(if v == b'\\' { '/' } else { v as char });
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else if b == b'\\' && slashes {
            out.push('/');
            i += 1;
        } else {
            // Non-ASCII bytes cannot be in a valid request target; hyper already refused them.
            let ch = path[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    fn n(p: &str, m: PathNormalization) -> String {
        normalize(p, m).unwrap().0.into_owned()
    }

    #[test]
    fn base_resolves_dots_and_decodes_unreserved_only() {
        assert_eq!(n("/api/../admin", Base), "/admin");
        assert_eq!(n("/./admin", Base), "/admin");
        assert_eq!(n("/a/b/..", Base), "/a/");
        assert_eq!(n("/../../x", Base), "/x");
        assert_eq!(n("/%61dmin", Base), "/admin");
        assert_eq!(n("/api%2Fadmin", Base), "/api%2Fadmin", "BASE keeps encoded slashes");
        assert_eq!(n("/a//b", Base), "/a//b", "BASE keeps double slashes");
        assert_eq!(n("/plain/path", Base), "/plain/path");
        assert!(matches!(normalize("/plain?x=/../y", Base).unwrap(), (Cow::Borrowed("/plain"), Some("x=/../y"))));
        assert!(normalize("/bad%zz", Base).is_err());
        assert!(normalize("/bad%4", Base).is_err());
    }

    #[test]
    fn merge_and_decode_slashes() {
        assert_eq!(n("//a///b", MergeSlashes), "/a/b");
        assert_eq!(n("/a/b/", MergeSlashes), "/a/b/", "a trailing slash is kept");
        assert_eq!(n("/api%2F..%2Fadmin", DecodeAndMergeSlashes), "/admin");
        assert_eq!(n("/api%5cadmin", DecodeAndMergeSlashes), "/api/admin");
        assert_eq!(n("/a/../b", None), "/a/../b");
    }
}

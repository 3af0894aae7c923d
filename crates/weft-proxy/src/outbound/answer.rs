//! What a route rule does to a request itself: answer it (a redirect or a
//! direct response, Istio's `redirect` and `directResponse`), or rewrite its
//! path before it is forwarded (Istio's `rewrite.uri`).

use crate::body::{empty_body, full_body, Body};
use crate::config::HttpRule;
use http::{HeaderValue, Request, Response};

/// The response of a rule that answers itself; `None` for rules that forward.
pub fn own_answer<B>(rule: &HttpRule, req: &Request<B>, host: Option<&str>) -> Option<Response<Body>> {
    if let Some(d) = &rule.direct_response {
        let mut r = Response::new(full_body(d.body.clone().unwrap_or_default()));
        *r.status_mut() = http::StatusCode::from_u16(d.status).unwrap_or(http::StatusCode::OK);
        return Some(r);
    }
    let rd = rule.redirect.as_ref()?;
    let host = rd.authority.clone().or(host.map(|h| h.split(':').next().unwrap_or(h).to_string())).unwrap_or_default();
    let port = rd.port.map(|p| format!(":{p}")).unwrap_or_default();
    let path = rd.path.clone().unwrap_or_else(|| req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or("/".into()));
    let location = format!("{}://{host}{port}{path}", rd.scheme.as_deref().unwrap_or("http"));
    let mut r = Response::new(empty_body());
    *r.status_mut() = http::StatusCode::from_u16(rd.status).unwrap_or(http::StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    Some(r)
}

/// The path and query to send upstream: `pq` with the rule's path rewrite
/// applied. A prefix rewrite replaces the prefix the match required and
/// keeps the rest; a full rewrite replaces the path. The query stays.
pub fn rewritten_path(rule: &HttpRule, matched_prefix: Option<&str>, pq: &str) -> String {
    let Some((new, prefix_only)) = rule.rewrite.as_ref().and_then(|r| r.path.as_deref().map(|p| (p, r.prefix_only))) else {
        return pq.to_string();
    };
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (pq, String::new()),
    };
    match (prefix_only, matched_prefix) {
        (true, Some(pre)) if path.starts_with(pre) => format!("{new}{}{query}", &path[pre.len()..]),
        _ => format!("{new}{query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DirectResponse, Redirect, Rewrite};

    fn rule(yaml: &str) -> HttpRule {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn prefix_rewrites_keep_the_rest_and_the_query() {
        let r = HttpRule { rewrite: Some(Rewrite { path: Some("/v2/".into()), prefix_only: true, authority: None }), ..rule("clusters: []") };
        assert_eq!(rewritten_path(&r, Some("/api/"), "/api/items?page=2"), "/v2/items?page=2");
        // Not matched by a prefix: the whole path is replaced.
        assert_eq!(rewritten_path(&r, None, "/api/items?page=2"), "/v2/?page=2");
        let full = HttpRule { rewrite: Some(Rewrite { path: Some("/health".into()), prefix_only: false, authority: None }), ..rule("clusters: []") };
        assert_eq!(rewritten_path(&full, Some("/api/"), "/api/items"), "/health");
        assert_eq!(rewritten_path(&rule("clusters: []"), None, "/same?x=1"), "/same?x=1");
    }

    #[test]
    fn redirects_keep_the_path_unless_told_and_direct_responses_answer() {
        let req = Request::builder().uri("/old/page?x=1").body(()).unwrap();
        let to = HttpRule {
            redirect: Some(Redirect { scheme: Some("https".into()), authority: None, path: None, port: Some(8443), status: 308 }),
            ..rule("clusters: []")
        };
        let r = own_answer(&to, &req, Some("shop:80")).unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], "https://shop:8443/old/page?x=1");
        let direct = HttpRule { direct_response: Some(DirectResponse { status: 418, body: Some("teapot".into()) }), ..rule("clusters: []") };
        assert_eq!(own_answer(&direct, &req, None).unwrap().status(), 418);
        assert!(own_answer(&rule("clusters: []"), &req, None).is_none(), "a forwarding rule does not answer");
    }
}

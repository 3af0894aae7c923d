//! Consistent-hash keys: the stable hash ring points are made with, the key
//! a request hashes to (header, cookie, query parameter or source IP), and
//! the cookie a sticky-session ring hands to a client that has none.

use weft_proto::config::{Cluster, LoadBalancer};

/// FNV-1a, 64 bits: stable across processes and releases (ring points must be).
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs: finish with a murmur-style avalanche.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// For a cookie-keyed ring with a ttl, when the request has no such cookie:
/// a new cookie value (from `random`) and its `Set-Cookie` header, so the
/// client comes back to the endpoint the value hashes to.
pub fn new_hash_cookie(cluster: &Cluster, random: u64) -> Option<(String, http::HeaderValue)> {
    if cluster.lb != LoadBalancer::RingHash {
        return None;
    }
    let on = cluster.hash_on.as_ref()?;
    let (name, ttl) = (on.cookie.as_ref()?, on.cookie_ttl?);
    let value = format!("{random:016x}");
    let header = format!("{name}={value}; Path={}; Max-Age={}; HttpOnly", on.cookie_path.as_deref().unwrap_or("/"), ttl.as_secs().max(1));
    Some((value, http::HeaderValue::from_str(&header).ok()?))
}

/// The consistent-hash key of a request, when the cluster hashes.
pub fn request_hash(cluster: &Cluster, headers: &http::HeaderMap, query: Option<&str>, source: std::net::IpAddr) -> Option<u64> {
    if cluster.lb != LoadBalancer::RingHash {
        return None;
    }
    let on = cluster.hash_on.as_ref()?;
    if let Some(name) = &on.header {
        return headers.get(name.as_str()).map(|v| hash64(v.as_bytes()));
    }
    if let Some(name) = &on.cookie {
        return headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash64(v.as_bytes()));
    }
    if let Some(name) = &on.query_parameter {
        return query?.split('&').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).find(|(k, _)| k == name).map(|(_, v)| hash64(v.as_bytes()));
    }
    on.source_ip.then(|| hash64(source.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(lb: &str, n: usize) -> Cluster {
        let eps: Vec<String> = (1..=n).map(|i| format!("\"10.0.0.{i}:80\"")).collect();
        serde_norway::from_str(&format!("{{name: c, endpoints: [{}], lb: {lb}}}", eps.join(","))).unwrap()
    }

    #[test]
    fn a_cookie_ring_with_a_ttl_hands_out_cookies_that_hash_like_the_request_would() {
        let mut c = cluster("ring_hash", 3);
        c.hash_on = Some(weft_proto::config::HashOn { cookie: Some("sticky".into()), cookie_ttl: Some(std::time::Duration::from_secs(3600)), ..Default::default() });
        let (value, header) = new_hash_cookie(&c, 0xabc).unwrap();
        assert_eq!(header, "sticky=0000000000000abc; Path=/; Max-Age=3600; HttpOnly");
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, format!("a=1; sticky={value}").parse().unwrap());
        let ip = "10.0.0.9".parse().unwrap();
        assert_eq!(request_hash(&c, &headers, None, ip), Some(hash64(value.as_bytes())), "the next request hashes the same");
        c.hash_on.as_mut().unwrap().cookie_ttl = None;
        assert!(new_hash_cookie(&c, 1).is_none(), "without a ttl no cookie is made (Istio)");
    }
}

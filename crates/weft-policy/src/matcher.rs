//! The values a policy compares against, compiled once: Istio's string
//! patterns (`exact`, `prefix*`, `*suffix`, `*` for "present"), CIDRs, and
//! the `values` / `notValues` pair every field comes in.

use crate::PolicyError;
use std::net::IpAddr;

/// Istio's string match: a single `*` at the start or the end, or alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `*`: any non-empty value.
    Present,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PolicyError> {
        if text == "*" {
            return Ok(Pattern::Present);
        }
        let inner = text.trim_start_matches('*').trim_end_matches('*');
        if inner.contains('*') || text.starts_with("**") || text.ends_with("**") || (text.starts_with('*') && text.ends_with('*')) {
            return Err(PolicyError::Pattern(text.to_string()));
        }
        Ok(if let Some(p) = text.strip_suffix('*') {
            Pattern::Prefix(p.into())
        } else if let Some(s) = text.strip_prefix('*') {
            Pattern::Suffix(s.into())
        } else {
            Pattern::Exact(text.into())
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(e) => value == &**e,
            Pattern::Prefix(p) => value.starts_with(&**p),
            Pattern::Suffix(s) => value.ends_with(&**s),
            Pattern::Present => !value.is_empty(),
        }
    }

    /// As [`Pattern::matches`], ignoring ASCII case (host names).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        let starts = |p: &str| value.len() >= p.len() && value.is_char_boundary(p.len()) && value[..p.len()].eq_ignore_ascii_case(p);
        let ends = |s: &str| {
            value.len() >= s.len() && value.is_char_boundary(value.len() - s.len()) && value[value.len() - s.len()..].eq_ignore_ascii_case(s)
        };
        match self {
            Pattern::Exact(e) => value.eq_ignore_ascii_case(e),
            Pattern::Prefix(p) => starts(p),
            Pattern::Suffix(s) => ends(s),
            Pattern::Present => !value.is_empty(),
        }
    }
}

/// An address block; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, PolicyError> {
        let bad = || PolicyError::Cidr(text.to_string());
        let (ip, len) = match text.split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().map_err(|_| bad())?, Some(len.parse::<u8>().map_err(|_| bad())?)),
            None => (text.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(Cidr { network: ip, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client reaching an IPv6 socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = (len / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = len % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// One field of a rule: matches when `values` is empty or one matches, and
/// none of `not_values` does. An absent attribute (a plaintext caller has
/// no principal) matches no value, so it fails `values` and passes `not_values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values<T> {
    pub values: Vec<T>,
    pub not_values: Vec<T>,
}

impl<T> Default for Values<T> {
    fn default() -> Self {
        Values { values: Vec::new(), not_values: Vec::new() }
    }
}

impl<T> Values<T> {
    pub fn compile(values: &[String], not_values: &[String], parse: impl Fn(&str) -> Result<T, PolicyError>) -> Result<Values<T>, PolicyError> {
        Ok(Values {
            values: values.iter().map(|v| parse(v)).collect::<Result<_, _>>()?,
            not_values: not_values.iter().map(|v| parse(v)).collect::<Result<_, _>>()?,
        })
    }

    pub fn is_any(&self) -> bool {
        self.values.is_empty() && self.not_values.is_empty()
    }

    /// Does the attribute pass? `hit` says whether one entry matches it.
    pub fn check(&self, hit: impl Fn(&T) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&hit)) && !self.not_values.iter().any(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_patterns() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert!(p("/api/*").matches("/api/x") && !p("/api/*").matches("/apix"));
        assert!(p("*.example.com").matches("a.example.com") && !p("*.example.com").matches("example.com"));
        assert!(p("*").matches("x") && !p("*").matches(""));
        assert!(p("GET").matches("GET") && !p("GET").matches("get"));
        assert!(p("*.Example.COM").matches_ignore_case("a.example.com"));
        assert!(p("api.Prod*").matches_ignore_case("API.prod:8080"));
        for bad in ["a*b", "*a*", "**", "a**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_and_mapped_addresses() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.7").unwrap().contains("10.0.0.7".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/12").unwrap().contains("10.15.255.255".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.0/12").unwrap().contains("10.16.0.0".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Request authentication (Istio `RequestAuthentication`): finds a JWT
//! where the rules say (by default `Authorization: Bearer`, then the
//! `access_token` parameter), verifies it with the `jsonwebtoken` crate
//! against its issuer's key set, and yields the request principal
//! (`iss/sub`) and claims policy can match. A request without a token
//! passes unauthenticated (a policy can require `requestPrincipals`); a
//! token that fails verification is refused with 401.

use crate::PolicyError;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use weft_proto::authz::JwtRule;

/// A token that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// `iss/sub`, as `requestPrincipals` are written.
    pub principal: String,
    pub claims: serde_json::Value,
}

/// Why a token was refused; the texts are Envoy's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("Jwt is not in the form of Header.Payload.Signature")]
    Malformed,
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    #[error("Jwt is expired")]
    Expired,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Audiences in Jwt are not allowed")]
    Audience,
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoKey,
    #[error("Jwt verification fails")]
    Verification,
}

struct Key {
    id: Option<String>,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

struct Rule {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
    headers: Vec<(HeaderName, String)>,
    params: Vec<String>,
    cookies: Vec<String>,
    output: Option<HeaderName>,
    claim_headers: Vec<(HeaderName, String)>,
    forward: bool,
}

/// The JWT rules of one workload, keys decoded once per config.
#[derive(Default)]
pub struct JwtVerifier {
    rules: Vec<Rule>,
}

/// A token found on a request, verified, with what to change before the app sees it.
#[derive(Debug)]
pub struct Authenticated {
    pub verified: Verified,
    /// Headers to remove (the token, unless `forwardOriginalToken`).
    pub remove: Vec<HeaderName>,
    /// `outputPayloadToHeader` and `outputClaimToHeaders`: headers the app receives.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl Authenticated {
    /// Rewrites the request's headers for the app.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for h in &self.remove {
            headers.remove(h);
        }
        for (name, value) in &self.add {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.rules.iter().map(|r| &r.issuer)).finish()
    }
}

impl JwtVerifier {
    pub fn new(rules: &[JwtRule]) -> Result<JwtVerifier, PolicyError> {
        let rules = rules
            .iter()
            .map(|r| {
                let bad = |e: String| PolicyError::Jwks { issuer: r.issuer.clone(), error: e };
                let keys = if r.jwks.trim().is_empty() {
                    // Not fetched (yet): no key verifies, so every token of this issuer is refused.
                    Vec::new()
                } else {
                    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&r.jwks).map_err(|e| bad(e.to_string()))?;
                    set.keys
                        .iter()
                        .filter_map(|k| {
                            let key = DecodingKey::from_jwk(k).ok()?;
                            let algorithm = k.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
                            Some(Key { id: k.common.key_id.clone(), algorithm, key })
                        })
                        .collect()
                };
                let header = |name: &str| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| PolicyError::HeaderName(name.to_string()));
                let mut headers = r.from_headers.iter().map(|h| Ok((header(&h.name)?, h.prefix.clone()))).collect::<Result<Vec<_>, PolicyError>>()?;
                let mut params = r.from_params.clone();
                if headers.is_empty() && params.is_empty() && r.from_cookies.is_empty() {
                    headers.push((http::header::AUTHORIZATION, "Bearer ".into()));
                    params.push("access_token".into());
                }
                Ok(Rule {
                    issuer: r.issuer.clone(),
                    audiences: r.audiences.clone(),
                    keys,
                    headers,
                    params,
                    cookies: r.from_cookies.clone(),
                    output: r.output_payload_to_header.as_deref().map(header).transpose()?,
                    claim_headers: r.output_claim_to_headers.iter().map(|c| Ok((header(&c.header)?, c.claim.clone()))).collect::<Result<_, PolicyError>>()?,
                    forward: r.forward_original_token,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(JwtVerifier { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Removes the headers the rules fill from verified tokens: a client
    /// must not be able to send its own `x-jwt-payload` and be believed.
    pub fn strip_forgeable(&self, headers: &mut HeaderMap) {
        for r in &self.rules {
            if let Some(h) = &r.output {
                headers.remove(h);
            }
            for (h, _) in &r.claim_headers {
                headers.remove(h);
            }
        }
    }

    /// Finds and verifies the request's token. `Ok(None)`: there is none.
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Option<Authenticated>, JwtError> {
        let mut found: Option<Authenticated> = None;
        // Every location of every rule: a token anywhere must verify with a rule for its issuer.
        for (token, header) in self.tokens(headers, query) {
            let issuer = peek_issuer(token)?;
            let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.issuer == issuer).collect();
            if rules.is_empty() {
                return Err(JwtError::UnknownIssuer);
            }
            let mut last = JwtError::NoKey;
            let mut ok = None;
            for rule in rules {
                match rule.verify(token) {
                    Ok(v) => {
                        ok = Some((rule, v));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let Some((rule, verified)) = ok else { return Err(last) };
            let entry = found.get_or_insert_with(|| {
                let mut add: Vec<(HeaderName, HeaderValue)> =
                    rule.output.clone().zip(token.split('.').nth(1).and_then(|p| HeaderValue::from_str(p).ok())).into_iter().collect();
                for (h, claim) in &rule.claim_headers {
                    let text = match verified.claims.get(claim) {
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Some(v.to_string()),
                        _ => None,
                    };
                    if let Some(v) = text.and_then(|t| HeaderValue::from_str(&t).ok()) {
                        add.push((h.clone(), v));
                    }
                }
                Authenticated { add, verified, remove: Vec::new() }
            });
            if let Some(h) = header.filter(|_| !rule.forward) {
                entry.remove.push(h.clone());
            }
        }
        Ok(found)
    }

    fn tokens<'a>(&'a self, headers: &'a HeaderMap, query: Option<&'a str>) -> Vec<(&'a str, Option<&'a HeaderName>)> {
        let mut out: Vec<(&str, Option<&HeaderName>)> = Vec::new();
        for r in &self.rules {
            for (name, prefix) in &r.headers {
                for v in headers.get_all(name) {
                    let Ok(v) = v.to_str() else { continue };
                    let token = if prefix.is_empty() {
                        Some(v)
                    } else {
                        v.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &v[prefix.len()..])
                    };
                    if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
                        if !out.iter().any(|(x, _)| *x == t) {
                            out.push((t, Some(name)));
                        }
                    }
                }
            }
            for name in &r.cookies {
                for v in headers.get_all(http::header::COOKIE) {
                    let Ok(v) = v.to_str() else { continue };
                    for pair in v.split(';').map(str::trim) {
                        if let Some(t) = pair.strip_prefix(name.as_str()).and_then(|rest| rest.strip_prefix('=')).filter(|t| !t.is_empty()) {
                            if !out.iter().any(|(x, _)| *x == t) {
                                out.push((t, None));
                            }
                        }
                    }
                }
            }
            for p in &r.params {
                for pair in query.unwrap_or("").split('&') {
                    if let Some(t) = pair.strip_prefix(p.as_str()).and_then(|rest| rest.strip_prefix('=')).filter(|t| !t.is_empty()) {
                        if !out.iter().any(|(x, _)| *x == t) {
                            out.push((t, None));
                        }
                    }
                }
            }
        }
        out
    }
}

impl Rule {
    fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.id.is_none() || k.id == header.kid)
            .filter(|k| k.algorithm.is_none_or(|a| a == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(JwtError::NoKey);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.required_spec_claims.clear();
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        let mut last = JwtError::Verification;
        for k in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &validation) {
                Ok(data) => {
                    let sub = data.claims.get("sub").and_then(|s| s.as_str()).unwrap_or_default();
                    return Ok(Verified { principal: format!("{}/{sub}", self.issuer), claims: data.claims });
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::ExpiredSignature => JwtError::Expired,
                        K::ImmatureSignature => JwtError::NotYetValid,
                        K::InvalidAudience => JwtError::Audience,
                        K::InvalidIssuer => JwtError::UnknownIssuer,
                        _ => JwtError::Verification,
                    };
                    // A definite answer about the claims holds for every key.
                    if last != JwtError::Verification {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// The `iss` claim, read without trusting it: only to pick the rule whose
/// keys then verify the whole token.
fn peek_issuer(token: &str) -> Result<String, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| JwtError::Malformed)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    claims.get("iss").and_then(|i| i.as_str()).map(str::to_string).ok_or(JwtError::UnknownIssuer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use weft_proto::authz::JwtHeader;

    /// A test issuer: an ES256 key, its JWKS, and tokens it signs.
    struct Issuer {
        der: Vec<u8>,
        jwks: String,
    }

    fn issuer(kid: &str) -> Issuer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","alg":"ES256","x":"{}","y":"{}"}}]}}"#, b64(&point[1..33]), b64(&point[33..]));
        Issuer { der: pkcs8.as_ref().to_vec(), jwks }
    }

    impl Issuer {
        fn sign(&self, kid: &str, claims: serde_json::Value) -> String {
            let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
            h.kid = Some(kid.into());
            jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.der)).unwrap()
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn rule(iss: &Issuer) -> JwtRule {
        JwtRule { source: "RequestAuthentication default/jwt".into(), issuer: "https://issuer.test".into(), jwks: iss.jwks.clone(), ..JwtRule::default() }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn a_valid_token_yields_its_principal_and_claims_and_is_removed() {
        let iss = issuer("k1");
        let v = JwtVerifier::new(&[JwtRule {
            output_payload_to_header: Some("x-jwt-payload".into()),
            output_claim_to_headers: vec![weft_proto::authz::ClaimToHeader { header: "x-user".into(), claim: "sub".into() }],
            ..rule(&iss)
        }])
        .unwrap();
        let mut forged = HeaderMap::new();
        forged.insert("x-user", "admin".parse().unwrap());
        forged.insert("x-jwt-payload", "e30".parse().unwrap());
        v.strip_forgeable(&mut forged);
        assert!(forged.is_empty(), "a client's own claim headers are removed: {forged:?}");
        let token = iss.sign("k1", serde_json::json!({"iss": "https://issuer.test", "sub": "alice", "exp": now() + 600, "groups": ["admins"]}));
        let mut headers = bearer(&token);
        let a = v.authenticate(&headers, None).unwrap().unwrap();
        assert_eq!(a.verified.principal, "https://issuer.test/alice");
        assert_eq!(a.verified.claims["groups"][0], "admins");
        a.apply(&mut headers);
        assert!(headers.get("authorization").is_none(), "not forwarded by default");
        assert_eq!(headers["x-jwt-payload"], token.split('.').nth(1).unwrap());
        assert_eq!(headers["x-user"], "alice");
        // From a query parameter too (the default locations).
        assert!(v.authenticate(&HeaderMap::new(), Some(&format!("a=1&access_token={token}"))).unwrap().is_some());
        assert!(v.authenticate(&HeaderMap::new(), None).unwrap().is_none(), "no token: unauthenticated, not refused");
    }

    #[test]
    fn expired_wrongly_signed_foreign_and_garbage_tokens_are_refused() {
        let iss = issuer("k1");
        let v = JwtVerifier::new(&[rule(&iss)]).unwrap();
        let claims = |exp: u64| serde_json::json!({"iss": "https://issuer.test", "sub": "alice", "exp": exp});
        let expired = iss.sign("k1", claims(now() - 3600));
        assert_eq!(v.authenticate(&bearer(&expired), None).unwrap_err(), JwtError::Expired);
        let impostor = issuer("k1").sign("k1", claims(now() + 600));
        assert_eq!(v.authenticate(&bearer(&impostor), None).unwrap_err(), JwtError::Verification);
        let other_kid = iss.sign("k2", claims(now() + 600));
        assert_eq!(v.authenticate(&bearer(&other_kid), None).unwrap_err(), JwtError::NoKey);
        let foreign = iss.sign("k1", serde_json::json!({"iss": "https://evil.test", "sub": "x"}));
        assert_eq!(v.authenticate(&bearer(&foreign), None).unwrap_err(), JwtError::UnknownIssuer);
        assert_eq!(v.authenticate(&bearer("not.a.jwt"), None).unwrap_err(), JwtError::Malformed);
        // A token whose header says "none" does not get past the key's algorithm.
        let mut parts: Vec<String> = iss.sign("k1", claims(now() + 600)).split('.').map(str::to_string).collect();
        parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        assert!(v.authenticate(&bearer(&format!("{}.{}.", parts[0], parts[1])), None).is_err());
        // No key set (jwksUri not fetched): refused, never accepted.
        let unfetched = JwtVerifier::new(&[JwtRule { jwks: String::new(), ..rule(&iss) }]).unwrap();
        assert!(unfetched.authenticate(&bearer(&iss.sign("k1", claims(now() + 600))), None).is_err());
    }

    #[test]
    fn audiences_and_custom_locations() {
        let iss = issuer("k1");
        let v = JwtVerifier::new(&[JwtRule {
            audiences: vec!["bookstore".into()],
            from_headers: vec![JwtHeader { name: "X-Jwt".into(), prefix: String::new() }],
            forward_original_token: true,
            ..rule(&iss)
        }])
        .unwrap();
        let tok = |aud: &str| iss.sign("k1", serde_json::json!({"iss": "https://issuer.test", "sub": "s", "aud": aud}));
        let mut h = HeaderMap::new();
        h.insert("x-jwt", tok("bookstore").parse().unwrap());
        let a = v.authenticate(&h, None).unwrap().unwrap();
        a.apply(&mut h);
        assert!(h.get("x-jwt").is_some(), "forwardOriginalToken keeps it");
        h.insert("x-jwt", tok("other").parse().unwrap());
        assert_eq!(v.authenticate(&h, None).unwrap_err(), JwtError::Audience);
        // The default location is not looked at when the rule names its own.
        assert!(v.authenticate(&bearer(&tok("other")), None).unwrap().is_none());
        let cookie = JwtVerifier::new(&[JwtRule { from_cookies: vec!["session".into()], ..rule(&iss) }]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("theme=dark; session={}", tok("x")).parse().unwrap());
        assert_eq!(cookie.authenticate(&h, None).unwrap().unwrap().verified.principal, "https://issuer.test/s");
    }
}

//! Who may use the controller's HTTP API. Every call but `/healthz` needs a
//! caller, and every caller has a role: `read` may get (resources, analysis,
//! proxies, their configs), `admin` may also apply, delete and mint tokens.
//!
//! Callers are proven by a bearer token (`weft-api.` + a payload naming the
//! caller, its role and expiry, signed with the controller's API key) or, on
//! TLS connections, by a client certificate from the mesh CA whose identity
//! is `weft-system/weft-admin` (admin) or `weft-system/weft-reader` (read).
//! Local use needs no setup: the controller writes an admin token for
//! `local-admin` into its data directory (0600, in a 0700 directory), where
//! `weft` on the same machine finds it.

use crate::identity::{private_dir, secret_key, write_atomic};
use ring::hmac;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_identity::token::{hex, unhex};
use weft_identity::SpiffeId;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: use read or admin")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Admin => "admin",
        })
    }
}

impl Role {
    /// The control-plane service account whose client certificate has this role.
    pub fn operator_account(self) -> &'static str {
        match self {
            Role::Admin => "weft-admin",
            Role::Read => "weft-reader",
        }
    }
}

/// A proven caller: a name for the audit log, and a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The longest an API token may live.
pub const MAX_API_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

const PREFIX: &str = "weft-api.";

/// The name of the token the controller writes for local use.
pub const LOCAL_ADMIN: &str = "local-admin";

pub struct ApiAuth {
    key: hmac::Key,
    trust_domain: String,
    /// Where the local admin token is kept.
    pub local_token: PathBuf,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Names a caller may have: letters, digits and `.-_@:` (they go into logs).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_@:".contains(&b))
}

impl ApiAuth {
    /// Opens (or makes) the API key in `DATA_DIR/api`, and writes the local admin token there.
    pub fn open(data_dir: &Path, trust_domain: &str) -> anyhow::Result<ApiAuth> {
        let dir = data_dir.join("api");
        private_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret_key(&dir.join("api.key"))?);
        let auth = ApiAuth { key, trust_domain: trust_domain.to_string(), local_token: dir.join("admin.token") };
        let token = auth.sign(LOCAL_ADMIN, Role::Admin, 0);
        if std::fs::read_to_string(&auth.local_token).ok().as_deref() != Some(token.as_str()) {
            write_atomic(&auth.local_token, token.as_bytes(), 0o600)?;
        }
        Ok(auth)
    }

    fn sign(&self, name: &str, role: Role, expires_unix: u64) -> String {
        let payload = format!("{role}/{expires_unix}/{name}");
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{PREFIX}{}.{}", hex(payload.as_bytes()), hex(tag.as_ref()))
    }

    /// A token for `name` with `role`, valid for `ttl` (at most [`MAX_API_TOKEN_TTL`]).
    pub fn mint(&self, name: &str, role: Role, ttl: Duration) -> Result<(String, u64), String> {
        if !valid_name(name) {
            return Err(format!("name {name:?}: use letters, digits and .-_@: (at most 128)"));
        }
        if ttl.is_zero() || ttl > MAX_API_TOKEN_TTL {
            return Err(format!("ttl must be between 1s and {}d", MAX_API_TOKEN_TTL.as_secs() / 86400));
        }
        let expires = unix_now() + ttl.as_secs();
        Ok((self.sign(name, role, expires), expires))
    }

    /// The caller a bearer token proves.
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        let rest = token.strip_prefix(PREFIX).ok_or("not a weft API token")?;
        let (payload, tag) = rest.split_once('.').ok_or("malformed token")?;
        let (payload, tag) = (unhex(payload).ok_or("malformed token")?, unhex(tag).ok_or("malformed token")?);
        hmac::verify(&self.key, &payload, &tag).map_err(|_| "token not issued by this controller")?;
        let text = String::from_utf8(payload).map_err(|_| "malformed token")?;
        let mut parts = text.splitn(3, '/');
        let (role, expires, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let role: Role = role.parse()?;
        let expires: u64 = expires.parse().map_err(|_| "malformed token")?;
        if expires != 0 && expires < unix_now() {
            return Err("token expired".into());
        }
        Ok(Caller { name: name.to_string(), role })
    }

    /// The caller a client certificate proves, if its identity has an API role.
    pub fn from_certificate(&self, id: &SpiffeId) -> Option<Caller> {
        if id.trust_domain != self.trust_domain || id.namespace != "weft-system" {
            return None;
        }
        let role = [Role::Admin, Role::Read].into_iter().find(|r| r.operator_account() == id.service_account)?;
        Some(Caller { name: id.to_string(), role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tag: &str) -> (ApiAuth, PathBuf) {
        let dir = std::env::temp_dir().join(format!("weft-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (ApiAuth::open(&dir, "cluster.local").unwrap(), dir)
    }

    #[test]
    fn tokens_carry_a_role_cannot_be_forged_and_expire() {
        let (a, dir) = auth("tokens");
        let (t, _) = a.mint("alice", Role::Read, Duration::from_secs(60)).unwrap();
        assert_eq!(a.verify(&t).unwrap(), Caller { name: "alice".into(), role: Role::Read });
        // Raising the role breaks the signature.
        let (payload, tag) = t.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let text = String::from_utf8(unhex(payload).unwrap()).unwrap().replace("read/", "admin/");
        assert_eq!(a.verify(&format!("{PREFIX}{}.{tag}", hex(text.as_bytes()))).unwrap_err(), "token not issued by this controller");
        let past = a.sign("bob", Role::Admin, 1);
        assert_eq!(a.verify(&past).unwrap_err(), "token expired");
        assert!(a.mint("x", Role::Read, Duration::from_secs(u64::MAX / 2)).unwrap_err().contains("ttl must be between 1s and 90d"));
        assert!(a.mint("a b", Role::Read, Duration::from_secs(1)).is_err());
        // Another controller's key does not verify ours.
        let (other, odir) = auth("tokens-other");
        assert!(other.verify(&t).is_err());
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(odir);
    }

    #[test]
    fn the_local_admin_token_is_private_and_survives_restarts() {
        use std::os::unix::fs::PermissionsExt;
        let (a, dir) = auth("local");
        let token = std::fs::read_to_string(&a.local_token).unwrap();
        assert_eq!(a.verify(&token).unwrap(), Caller { name: LOCAL_ADMIN.into(), role: Role::Admin });
        assert_eq!(std::fs::metadata(&a.local_token).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("api")).unwrap().permissions().mode() & 0o777, 0o700);
        let again = ApiAuth::open(&dir, "cluster.local").unwrap();
        assert_eq!(std::fs::read_to_string(&again.local_token).unwrap(), token);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_the_control_planes_operator_identities_get_roles_by_certificate() {
        let (a, dir) = auth("certs");
        let id = |s: &str| s.parse::<SpiffeId>().unwrap();
        assert_eq!(a.from_certificate(&id("spiffe://cluster.local/ns/weft-system/sa/weft-admin")).unwrap().role, Role::Admin);
        assert_eq!(a.from_certificate(&id("spiffe://cluster.local/ns/weft-system/sa/weft-reader")).unwrap().role, Role::Read);
        assert!(a.from_certificate(&id("spiffe://cluster.local/ns/default/sa/weft-admin")).is_none());
        assert!(a.from_certificate(&id("spiffe://other.domain/ns/weft-system/sa/weft-admin")).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}

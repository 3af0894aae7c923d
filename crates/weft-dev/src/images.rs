//! What runs for a container. Images cannot be pulled here, so each
//! container becomes a local program, and `weft dev up` says which: the
//! pod's `weft.dev/run` annotation (or `weft.dev/run-CONTAINER`), a mapping
//! file (`--images`: image pattern -> command), or a built-in default for
//! the images tutorials use; anything else runs `weft-echo` on the
//! container's ports, answering with the pod, its version and the request.

use serde_json::Value;

/// A program to run for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `weft-echo serve` on each port (8080 when the container declares none).
    Echo { ports: Vec<u16> },
    /// The local nginx serving a page naming the pod, its version and SERVICE_NAME.
    Nginx { ports: Vec<u16> },
    /// redis-server on the container's first port (6379).
    Redis { port: u16 },
    /// A command line run with `sh -c`.
    Shell(String),
    /// An argv as the manifest's `command` + `args` write it.
    Argv(Vec<String>),
    /// Nothing but staying alive (a shell image without a command): `sleep infinity`.
    Idle,
}

impl Program {
    /// How `weft dev up` reports it.
    pub fn describe(&self) -> String {
        match self {
            Program::Echo { ports } => format!("weft-echo on {}", join(ports)),
            Program::Nginx { ports } => format!("nginx on {}", join(ports)),
            Program::Redis { port } => format!("redis-server on {port}"),
            Program::Shell(cmd) => format!("sh -c {cmd:?}"),
            Program::Argv(argv) => argv.join(" "),
            Program::Idle => "sleep infinity".into(),
        }
    }
}

fn join(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// One line of an `--images` file: `PATTERN: COMMAND` (`*` matches anything).
#[derive(Debug, Clone, Default)]
pub struct ImageMap(pub Vec<(String, String)>);

impl ImageMap {
    pub fn parse(text: &str) -> anyhow::Result<ImageMap> {
        let v: Value = serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("not YAML: {e}"))?;
        let m = v.as_object().ok_or_else(|| anyhow::anyhow!("must be a mapping of image pattern to command"))?;
        let mut out = Vec::new();
        for (k, v) in m {
            let cmd = v.as_str().ok_or_else(|| anyhow::anyhow!("{k}: the command must be a string"))?;
            out.push((k.clone(), cmd.to_string()));
        }
        Ok(ImageMap(out))
    }

    fn find(&self, image: &str) -> Option<&str> {
        self.0.iter().find(|(p, _)| glob(p, image)).map(|(_, c)| c.as_str())
    }
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// The image's repository without registry and tag: `docker.io/library/nginx:1.27` -> `nginx`.
fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// Chooses the program for container `c` of a pod with `annotations`.
pub fn program_for(c: &Value, annotations: &std::collections::BTreeMap<String, String>, single: bool, map: &ImageMap) -> Program {
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let ports: Vec<u16> = c.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(|p| p.get("containerPort")?.as_u64()).filter_map(|n| u16::try_from(n).ok()).collect();
    if let Some(cmd) = annotations.get(&format!("weft.dev/run-{name}")).or_else(|| if single { annotations.get("weft.dev/run") } else { None }) {
        return Program::Shell(cmd.clone());
    }
    if let Some(cmd) = map.find(image) {
        return Program::Shell(cmd.to_string());
    }
    let argv: Vec<String> = ["command", "args"].iter().flat_map(|k| c.get(*k).and_then(Value::as_array).cloned().unwrap_or_default()).filter_map(|v| v.as_str().map(String::from)).collect();
    match repository(image) {
        "nginx" | "nginx-unprivileged" => Program::Nginx { ports: if ports.is_empty() { vec![80] } else { ports } },
        "redis" | "valkey" => Program::Redis { port: ports.first().copied().unwrap_or(6379) },
        "busybox" | "curl" | "alpine" | "debian" | "ubuntu" | "netshoot" => {
            if argv.is_empty() {
                Program::Idle
            } else {
                Program::Argv(argv)
            }
        }
        _ => Program::Echo { ports: if ports.is_empty() { vec![8080] } else { ports } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_become_local_programs() {
        let none = Default::default();
        let map = ImageMap::parse("\"registry.example.com/pay/*\": ./pay-server --port 9000\n").unwrap();
        let c = |image: &str, extra: Value| {
            let mut c = json!({ "name": "app", "image": image, "ports": [ { "containerPort": 8081 } ] });
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            c
        };
        assert_eq!(program_for(&c("nginx:1.27", json!({})), &none, true, &map), Program::Nginx { ports: vec![8081] });
        assert_eq!(program_for(&c("docker.io/library/redis:7", json!({})), &none, true, &map), Program::Redis { port: 8081 });
        assert_eq!(program_for(&c("curlimages/curl:8.5.0", json!({ "command": ["sleep", "3600"] })), &none, true, &map), Program::Argv(vec!["sleep".into(), "3600".into()]));
        assert_eq!(program_for(&c("busybox", json!({})), &none, true, &map), Program::Idle);
        assert_eq!(program_for(&c("registry.example.com/pay/api:3", json!({})), &none, true, &map), Program::Shell("./pay-server --port 9000".into()));
        assert_eq!(program_for(&c("edtech/exam-service:2.0", json!({})), &none, true, &map), Program::Echo { ports: vec![8081] });
        let ann = [("weft.dev/run".to_string(), "python3 -m http.server 8081".to_string())].into();
        assert_eq!(program_for(&c("edtech/x:1", json!({})), &ann, true, &map), Program::Shell("python3 -m http.server 8081".into()));
    }

    #[test]
    fn globs() {
        assert!(glob("nginx:*", "nginx:1.27"));
        assert!(glob("*", "x"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("nginx:*", "nginx"));
    }
}

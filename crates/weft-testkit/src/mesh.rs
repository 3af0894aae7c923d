//! A test's mesh: a bridge, a controller, and meshed pods made the way every
//! end-to-end scenario makes them (a weft-echo backend behind its proxy, a
//! client whose proxy resolves a Service's virtual IP), so each test file
//! states only what its story is about.

use crate::{ControllerProcess, Net, Pod};

pub struct TestMesh {
    pub net: Net,
    pub ctl: ControllerProcess,
}

impl TestMesh {
    /// A bridge and a development controller (`--insecure-dev`): the proxies
    /// of these meshes have no join tokens and are taken at their word, which
    /// is what a story about traffic needs. Stories about identity use
    /// [`TestMesh::start_with`] without the flag, and tokens.
    pub fn start(tag: &str) -> TestMesh {
        TestMesh::start_with(tag, &["--insecure-dev"])
    }

    /// As [`TestMesh::start`], with extra `weft controller` arguments.
    pub fn start_with(tag: &str, controller_args: &[&str]) -> TestMesh {
        let net = Net::new().expect("network namespaces");
        let dir = std::env::temp_dir().join(format!("weft-e2e-{tag}-{}", std::process::id()));
        let ctl = ControllerProcess::start_with(&net, &dir, controller_args).expect("weft controller");
        TestMesh { net, ctl }
    }

    /// A backend pod `name`: weft-echo on 8080 answering as `name` with
    /// `version`, its proxy announcing `labels` (`app=reviews,version=v1`)
    /// in namespace `default`.
    pub fn backend(&self, name: &str, labels: &str, version: &str) -> Pod {
        let pod = self.net.pod(name).expect("pod");
        pod.start_echo(8080, version).expect("weft-echo");
        pod.start_meshed_proxy(self.ctl.grpc, "default", labels, &[]).expect("proxy");
        pod
    }

    /// A meshed client pod in `default` whose names in `hosts` resolve to their virtual IPs.
    pub fn client(&self, name: &str, labels: &str, hosts: &[(&str, &str)]) -> Pod {
        let pod = self.net.pod(name).expect("pod");
        pod.start_meshed_proxy(self.ctl.grpc, "default", labels, &[]).expect("proxy");
        pod.set_hosts(hosts).expect("hosts file");
        pod
    }
}

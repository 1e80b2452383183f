//! Envoy's ext_authz `http_service` with the shipped `envoy/envoy-http.yaml`, scopegate's
//! `/envoy/` dialect.

use std::path::{Path, PathBuf};

use crate::common::stack::{envoy_addresses, envoy_binary, substitute};
use crate::harness::{Keys, ProxyKind, ProxyStack, Targets};

/// The shipped configuration.
const SHIPPED: &str = "envoy/envoy-http.yaml";

/// Envoy from the shipped file, its listener and admin interface on ports it chooses at bind
/// time: the admin address is written to a file, the listener's read from the admin interface.
pub struct EnvoyHttp;

impl ProxyKind for EnvoyHttp {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn binary(&self) -> PathBuf {
        envoy_binary()
    }

    fn files(&self, _dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED))
            .expect("read the Envoy configuration");
        let yaml = substitute(&yaml, "address: 0.0.0.0\n", "address: 127.0.0.1\n", 1);
        let yaml = substitute(&yaml, "port_value: 9901\n", "port_value: 0\n", 1);
        let yaml = substitute(&yaml, "port_value: 10000\n", "port_value: 0\n", 1);
        let yaml = substitute(
            &yaml,
            "port_value: 9193\n",
            &format!("port_value: {}\n", to.scopegate_port()),
            1,
        );
        let yaml = substitute(
            &yaml,
            "port_value: 8080\n",
            &format!("port_value: {}\n", to.upstream_port()),
            1,
        );
        vec![("envoy.yaml".to_string(), yaml)]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let dir = dir.display();
        vec![
            "-c".into(),
            format!("{dir}/envoy.yaml"),
            "--admin-address-path".into(),
            format!("{dir}/admin-address"),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            "warn".into(),
            // Access log lines within a tenth of a second, not the default ten.
            "--file-flush-interval-msec".into(),
            "100".into(),
        ]
    }

    fn reports_its_port(&self) -> bool {
        true
    }

    async fn bound_url(&self, dir: &Path, log: &Path, http: &reqwest::Client) -> String {
        envoy_addresses(http, &dir.join("admin-address"), log)
            .await
            .1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_smoke() {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Served).await;
    let answer = stack.get("/restricted_resource", &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
}

//! nginx (`auth_request`) with the shipped `proxies/nginx/scopegate.conf`, scopegate's
//! `/nginx-auth` dialect.

use std::path::{Path, PathBuf};

use crate::common::stack::substitute;
use crate::harness::{
    Keys, ProxyKind, ProxyStack, SHIPPED_LISTEN_PORT, SHIPPED_SCOPEGATE, SHIPPED_UPSTREAM, Targets,
    proxy_binary,
};

/// The shipped server configuration.
const SHIPPED: &str = "proxies/nginx/scopegate.conf";

/// nginx as a single foreground process (no daemon, no worker processes: killing it stops
/// everything), its main configuration a wrapper that includes the shipped file in `http {}`,
/// as users do, with every path in the scratch directory.
pub struct Nginx;

impl Nginx {
    /// The wrapper `nginx.conf` around the server configuration in `dir`.
    fn main_config(dir: &Path) -> String {
        let dir = dir.display();
        format!(
            "daemon off;\n\
             master_process off;\n\
             pid {dir}/nginx.pid;\n\
             error_log stderr notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log /dev/stderr;\n\
             \x20   client_body_temp_path {dir}/client_body;\n\
             \x20   proxy_temp_path {dir}/proxy;\n\
             \x20   fastcgi_temp_path {dir}/fastcgi;\n\
             \x20   uwsgi_temp_path {dir}/uwsgi;\n\
             \x20   scgi_temp_path {dir}/scgi;\n\
             \x20   include {dir}/scopegate.conf;\n\
             }}\n"
        )
    }
}

impl ProxyKind for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn binary(&self) -> PathBuf {
        proxy_binary(
            "SCOPEGATE_NGINX_BIN",
            &[PathBuf::from("/usr/sbin/nginx")],
            "scripts/install-nginx",
        )
    }

    fn files(&self, dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let shipped = read(SHIPPED);
        let server = substitute(
            &shipped,
            &format!("server {SHIPPED_SCOPEGATE};"),
            &format!("server {};", to.scopegate),
            1,
        );
        let server = substitute(
            &server,
            &format!("server {SHIPPED_UPSTREAM};"),
            &format!("server {};", to.upstream),
            1,
        );
        let server = substitute(
            &server,
            &format!("listen {SHIPPED_LISTEN_PORT};"),
            &format!("listen 127.0.0.1:{};", to.listen_port),
            1,
        );
        vec![
            ("nginx.conf".to_string(), Nginx::main_config(dir)),
            ("scopegate.conf".to_string(), server),
        ]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let dir = dir.display();
        vec![
            "-p".into(),
            format!("{dir}/"),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            format!("{dir}/nginx.conf"),
        ]
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The shipped file as it stands (its addresses unchanged) passes `nginx -t` inside a wrapper
/// `http {}`, with the pinned nginx.
#[test]
fn the_shipped_nginx_configuration_passes_nginx_t() {
    crate::common::watchdog::arm();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("scopegate.conf"), read(SHIPPED)).expect("write");
    std::fs::write(
        dir.path().join("nginx.conf"),
        Nginx::main_config(dir.path()),
    )
    .expect("write");
    let out = std::process::Command::new(Nginx.binary())
        .arg("-t")
        .args(Nginx.args(dir.path()))
        .output()
        .expect("nginx -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test is successful"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_smoke() {
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    let answer = stack.get("/restricted_resource", &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
}

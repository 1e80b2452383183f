//! The Docker stack cannot run here (no Docker engine), so this checks that `docker-compose.yml`,
//! the `Dockerfile`, `envoy/envoy.yaml`, `demo/compose.toml` (the demo configuration with the
//! stack's host names) and the pinned Envoy version all agree, and that every command the stack
//! runs is one the binary accepts.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

/// A YAML file of the repository, as JSON values.
fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `scopegate` cluster of an Envoy configuration.
fn scopegate_cluster(envoy: &mut Value) -> &mut Value {
    envoy["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
        .iter_mut()
        .find(|c| c["name"] == "scopegate")
        .expect("the scopegate cluster")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| s.to_string())
        })
        .collect()
}

/// The value after `flag` in a command list.
fn arg(command: &[String], flag: &str) -> String {
    let at = command
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {command:?}"));
    command[at + 1].clone()
}

/// `port_value` under the `socket_address` whose `address` is `address` in envoy.yaml.
fn envoy_port(yaml: &Value, address: &str) -> u64 {
    fn walk(v: &Value, address: &str, out: &mut Vec<u64>) {
        match v {
            Value::Object(map) => {
                if map.get("address").and_then(Value::as_str) == Some(address)
                    && let Some(port) = map.get("port_value").and_then(Value::as_u64)
                {
                    out.push(port);
                }
                map.values().for_each(|child| walk(child, address, out));
            }
            Value::Array(items) => items.iter().for_each(|child| walk(child, address, out)),
            _ => {}
        }
    }
    let mut ports = Vec::new();
    walk(yaml, address, &mut ports);
    assert_eq!(
        ports.len(),
        1,
        "one socket address for {address} in envoy.yaml: {ports:?}"
    );
    ports[0]
}

fn pinned_envoy_version() -> String {
    let script = read("scripts/install-envoy");
    let line = script
        .lines()
        .find(|l| l.starts_with("ENVOY_SERVER_VERSION="))
        .expect("pinned version in scripts/install-envoy");
    line.split('"').nth(1).expect("quoted version").to_string()
}

#[test]
fn services_ports_and_mounts_agree_with_the_config_files() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["envoy", "issuer", "issuer-eddsa", "scopegate", "upstream"]
    );
    let envoy_yaml = yaml("envoy/envoy.yaml");

    // Envoy: pinned image, the repository's config mounted where the command reads it, the
    // listener and admin ports published.
    let envoy = &compose["services"]["envoy"];
    assert_eq!(
        envoy["image"],
        format!("envoyproxy/envoy:v{}", pinned_envoy_version())
    );
    let mount = strings(&envoy["volumes"]);
    assert_eq!(mount, ["./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro"]);
    assert_eq!(
        arg(&strings(&envoy["command"]), "-c"),
        "/etc/envoy/envoy.yaml"
    );
    let published = strings(&envoy["ports"]);
    assert!(
        published.contains(&"8080:8080".to_string())
            && published.contains(&"9901:9901".to_string()),
        "{published:?}"
    );
    let yaml_text = read("envoy/envoy.yaml");
    assert!(yaml_text.contains("port_value: 8080\n") && yaml_text.contains("port_value: 9901\n"));

    // scopegate: the cluster in envoy.yaml names this service and its port; the demo config is
    // mounted where the command (and the Dockerfile's default CMD) reads it.
    let gate = &compose["services"]["scopegate"];
    let command = strings(&gate["command"]);
    let config_path = arg(&command, "--config");
    assert_eq!(
        strings(&gate["volumes"]),
        [format!("./demo/compose.toml:{config_path}:ro")]
    );
    assert!(
        gate.get("environment").is_none(),
        "the configuration file says everything; SCOPEGATE_ISSUER and friends cannot be used \
         beside [[issuers]]"
    );
    assert!(
        read("Dockerfile").contains(&format!("CMD [\"serve\", \"--config\", \"{config_path}\"]"))
    );
    let demo: toml::Table = read("demo/compose.toml").parse().expect("compose config");
    let listen = demo["listen"].as_str().expect("listen");
    let port = listen.rsplit(':').next().expect("port");
    assert_eq!(envoy_port(&envoy_yaml, "scopegate").to_string(), port);
    let metrics = demo["metrics_listen"].as_str().expect("metrics_listen");
    let metrics_port = metrics.rsplit(':').next().expect("port");
    assert!(
        metrics.starts_with("0.0.0.0:"),
        "reachable from outside the container: {metrics}"
    );
    assert_eq!(
        strings(&gate["ports"]),
        [
            format!("{port}:{port}"),
            format!("{metrics_port}:{metrics_port}")
        ]
    );

    // The issuers: scopegate trusts exactly what each issues, with the algorithm it signs with,
    // and waits for both.
    let trusted = demo["issuers"].as_array().expect("[[issuers]]");
    assert_eq!(trusted.len(), 2);
    for (name, alg) in [("issuer", "RS256"), ("issuer-eddsa", "EdDSA")] {
        let issuer = &compose["services"][name];
        let issuer_command = strings(&issuer["command"]);
        let issuer_url = arg(&issuer_command, "--issuer");
        assert!(
            issuer_url.starts_with(&format!("http://{name}:")),
            "the issuer service's own name: {issuer_url}"
        );
        let entry = trusted
            .iter()
            .find(|entry| entry["issuer"].as_str() == Some(issuer_url.as_str()))
            .unwrap_or_else(|| panic!("{name}'s {issuer_url} is a trusted issuer"));
        let allowed = entry
            .get("algorithms")
            .map(|list| list.as_array().expect("list").clone())
            .unwrap_or_else(|| vec![toml::Value::from("RS256")]);
        assert!(allowed.contains(&toml::Value::from(alg)), "{name}: {entry}");
        let signs_with = issuer_command
            .iter()
            .position(|a| a == "--alg")
            .map_or("RS256".to_string(), |_| arg(&issuer_command, "--alg"));
        assert_eq!(signs_with, alg, "{name}");
        if let Some(jwks_uri) = entry.get("jwks_uri") {
            assert_eq!(
                jwks_uri.as_str(),
                Some(format!("{issuer_url}.well-known/jwks.json").as_str())
            );
        }
        let issuer_port = arg(&issuer_command, "--listen")
            .rsplit(':')
            .next()
            .expect("port")
            .to_string();
        assert!(issuer_url.ends_with(&format!(":{issuer_port}/")));
        let key_file = arg(&issuer_command, "--key-file");
        let volume = strings(&issuer["volumes"]).remove(0);
        let mount_point = volume.split(':').nth(1).expect("mount point");
        assert!(
            key_file.starts_with(&format!("{mount_point}/")),
            "key file {key_file} on the volume {volume}"
        );
        assert_eq!(gate["depends_on"][name]["condition"], "service_healthy");
    }
    let key_files: Vec<String> = ["issuer", "issuer-eddsa"]
        .iter()
        .map(|name| {
            arg(
                &strings(&compose["services"][name]["command"]),
                "--key-file",
            )
        })
        .collect();
    assert_ne!(key_files[0], key_files[1], "one key file per issuer");

    // The upstream: the cluster in envoy.yaml names this service and its port.
    let upstream = strings(&compose["services"]["upstream"]["command"]);
    let upstream_port = arg(&upstream, "--listen")
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    assert_eq!(
        envoy_port(&envoy_yaml, "upstream").to_string(),
        upstream_port
    );

    // Every start order waits on a healthcheck.
    assert_eq!(
        envoy["depends_on"]["scopegate"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        envoy["depends_on"]["upstream"]["condition"],
        "service_healthy"
    );
}

/// The subcommands behind the `dev` cargo feature, which only the Dockerfile's `dev` target has.
const DEV_SUBCOMMANDS: [&str; 4] = ["dev-issuer", "mint-token", "demo-upstream", "dev-certs"];

#[test]
fn every_command_the_stack_runs_is_accepted_by_the_binary() {
    let compose = compose();
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("COPY --from=builder /out/scopegate /usr/local/bin/scopegate"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/scopegate\"]"));
    assert!(
        dockerfile.contains("USER 65532:65532"),
        "the runtime image runs as the numeric non-root user (see tests/dockerfile.rs)"
    );
    for name in ["issuer", "issuer-eddsa", "scopegate", "upstream"] {
        let service = &compose["services"][name];
        // The development subcommands exist only in the Dockerfile's `dev` target; everything
        // else runs the default (production) image, as a user's deployment would.
        let command = strings(&service["command"]);
        if DEV_SUBCOMMANDS.contains(&command[0].as_str()) {
            assert_eq!(
                service["build"]["context"], ".",
                "{name}: {}",
                service["build"]
            );
            assert_eq!(
                service["build"]["target"], "dev",
                "{name} runs {}",
                command[0]
            );
        } else {
            assert_eq!(
                service["build"], ".",
                "{name} is built from the Dockerfile's default"
            );
        }
        let mut commands = vec![command];
        let health = strings(&service["healthcheck"]["test"]);
        assert_eq!(&health[..2], ["CMD", "/usr/local/bin/scopegate"], "{name}");
        commands.push(health[2..].to_vec());
        for command in commands {
            // clap rejects unknown subcommands and flags before it gets to --help.
            let out = crate::common::scopegate_command()
                .args(&command)
                .arg("--help")
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{name}: `scopegate {}` is not accepted: {}",
                command.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn compose_scopegate_configuration_is_valid() {
    let out = crate::common::scopegate_command()
        .args([
            "check-config",
            "--config",
            &format!("{ROOT}/demo/compose.toml"),
        ])
        .env_remove("SCOPEGATE_ISSUER")
        .env_remove("SCOPEGATE_JWKS_URI")
        .env_remove("SCOPEGATE_AUDIENCE")
        .env_remove("SCOPEGATE_LISTEN")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of a configuration file that are not comments or blank.
fn settings(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[test]
fn compose_configuration_is_the_demo_configuration_with_service_names() {
    // The demo (and the end-to-end tests) run demo/scopegate.toml; the Docker stack runs
    // demo/compose.toml. They may differ only in where the issuers are reached, and so in the
    // permission to reach them over plain http (loopback needs none).
    let demo = read("demo/scopegate.toml")
        .replace("http://127.0.0.1:8081/", "http://issuer:8081/")
        .replace("http://127.0.0.1:8082/", "http://issuer-eddsa:8082/");
    let compose = read("demo/compose.toml");
    let mut compose = settings(&compose);
    let allowed = compose
        .iter()
        .position(|line| *line == "allow_insecure_http = true")
        .expect("the Docker stack reaches its issuers over plain http by service name");
    compose.remove(allowed);
    assert_eq!(settings(&demo), compose);
}

#[test]
fn envoy_configs_are_valid_for_the_pinned_envoy() {
    let envoy = crate::common::stack::envoy_binary();
    // An external command could hang: bound this test as the fixtures bound theirs.
    crate::common::watchdog::arm();
    let version = Command::new(&envoy)
        .arg("--version")
        .output()
        .expect("envoy --version");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains(&format!("/{}/", pinned_envoy_version())),
        "{version}"
    );
    // envoy.yaml is what users run; envoy-tls.yaml the same over mTLS (validated with a
    // throw-away certificate set where it expects one); envoy-http.yaml the same through the
    // HTTP authorization listener; envoy-client-mtls.yaml requires client certificates (with
    // the same throw-away set); jwt_authn.yaml is the comparison scripts/load measures.
    let certs = tempfile::tempdir().expect("dir");
    scopegate::dev::certs::generate(certs.path(), &["scopegate".to_string()]).expect("certs");
    let tls_yaml = certs.path().join("envoy-tls.yaml");
    std::fs::write(
        &tls_yaml,
        read("envoy/envoy-tls.yaml").replace(
            "filename: /etc/envoy/certs/",
            &format!("filename: {}/", certs.path().display()),
        ),
    )
    .expect("write");
    let client_mtls_yaml = certs.path().join("envoy-client-mtls.yaml");
    std::fs::write(
        &client_mtls_yaml,
        read("envoy/envoy-client-mtls.yaml").replace(
            "filename: /etc/envoy/certs/",
            &format!("filename: {}/", certs.path().display()),
        ),
    )
    .expect("write");
    for config in [
        format!("{ROOT}/envoy/envoy.yaml"),
        format!("{ROOT}/envoy/envoy-uds.yaml"),
        format!("{ROOT}/envoy/envoy-http.yaml"),
        tls_yaml.display().to_string(),
        client_mtls_yaml.display().to_string(),
        format!("{ROOT}/envoy/jwt_authn.yaml"),
    ] {
        // An external command could hang: bound this test as the fixtures bound theirs.
        crate::common::watchdog::arm();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c", &config])
            .output()
            .expect("envoy --mode validate");
        assert!(
            out.status.success(),
            "{config}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_mtls_envoy_config_differs_only_in_its_transport_to_scopegate() {
    let plain = yaml("envoy/envoy.yaml");
    let mut tls = yaml("envoy/envoy-tls.yaml");
    let socket = scopegate_cluster(&mut tls)
        .as_object_mut()
        .expect("cluster")
        .remove("transport_socket")
        .expect("a transport socket");
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let context = &socket["typed_config"];
    assert_eq!(context["sni"], "scopegate");
    let common = &context["common_tls_context"];
    assert_eq!(common["alpn_protocols"], serde_json::json!(["h2"]));
    assert!(
        common["tls_certificates"][0]["certificate_chain"].is_object(),
        "a client certificate"
    );
    assert!(
        common["validation_context"]["trusted_ca"].is_object(),
        "a CA to check scopegate by"
    );
    assert_eq!(plain, tls, "everything else is envoy.yaml");
}

#[test]
fn the_client_mtls_envoy_config_differs_only_in_its_listener_and_the_peer_certificate() {
    let plain = yaml("envoy/envoy.yaml");
    let mut client_mtls = yaml("envoy/envoy-client-mtls.yaml");
    let listener = &mut client_mtls["static_resources"]["listeners"][0];
    assert_eq!(listener["name"], "ingress_http");
    assert_eq!(
        listener["address"]["socket_address"]["port_value"], 8443,
        "HTTPS"
    );
    listener["address"]["socket_address"]["port_value"] = serde_json::json!(8080);
    let chain = &mut listener["filter_chains"][0];
    let socket = chain
        .as_object_mut()
        .expect("filter chain")
        .remove("transport_socket")
        .expect("a transport socket");
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let context = &socket["typed_config"];
    assert!(
        context["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".DownstreamTlsContext")),
        "{context}"
    );
    assert_eq!(
        context["require_client_certificate"], true,
        "every client shows a certificate"
    );
    let common = &context["common_tls_context"];
    assert!(
        common["tls_certificates"][0]["certificate_chain"].is_object(),
        "Envoy's own certificate"
    );
    assert!(
        common["validation_context"]["trusted_ca"].is_object(),
        "a CA client certificates chain to"
    );
    let ext_authz = chain["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()
        .expect("http filters")
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.ext_authz")
        .expect("ext_authz");
    assert_eq!(
        ext_authz["typed_config"]["include_peer_certificate"], true,
        "each Check carries the client certificate"
    );
    ext_authz["typed_config"]["include_peer_certificate"] = serde_json::json!(false);
    assert_eq!(plain, client_mtls, "everything else is envoy.yaml");
}

#[test]
fn the_unix_socket_envoy_config_differs_only_in_how_it_reaches_scopegate() {
    let plain = yaml("envoy/envoy.yaml");
    let mut uds = yaml("envoy/envoy-uds.yaml");
    let gate = scopegate_cluster(&mut uds);
    assert_eq!(
        gate["type"], "STATIC",
        "a pipe address cannot be resolved by DNS"
    );
    let address =
        &mut gate["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
    assert_eq!(address["pipe"]["path"], "/run/scopegate/authz.sock");
    *address = serde_json::json!({"socket_address": {"address": "scopegate", "port_value": 9191}});
    gate["type"] = serde_json::json!("STRICT_DNS");
    assert_eq!(plain, uds, "everything else is envoy.yaml");
}

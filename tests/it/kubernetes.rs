//! No cluster runs here, so `deploy/kubernetes` is checked offline: every manifest against the
//! Kubernetes API schemas of a pinned version (`kubernetes-validate`, which `scripts/test`
//! installs), the ConfigMap's `scopegate.toml` by `scopegate check-config`, and the manifests
//! against that configuration and the Dockerfile (ports, probes, the config path, the user). The
//! Istio resources in `deploy/istio` have no schemas there; they are parsed and their fields
//! checked. The memory limit is checked against the worst case the ConfigMap's limits allow, by
//! SECURITY.md's own numbers (Limits, memory), and each kustomize component's patches are applied to the base and the
//! result validated. Last, the binary runs the ConfigMap's configuration and answers the
//! Deployment's probes as the kubelet needs while the identity provider is down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use scopegate::config::{Config, ENV_OVERRIDES, ListenAddr, RawConfig};
use scopegate::serve::server::{AUTHORIZATION_SERVICE, DRAIN_TIMEOUT, LIVENESS_SERVICE};
use serde_json::Value;

use crate::common::binary::{Binary, listen_address};
use crate::common::{AUDIENCE, ISSUER, JwksServer, Reply, TestKey, eventually, jwks_of};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Kubernetes version whose API schemas the manifests must satisfy.
const KUBERNETES_VERSION: &str = "1.33.0";
const BASE: &str = "deploy/kubernetes";
/// The ConfigMap's key, and so the configuration's file name in the pod.
const CONFIG_KEY: &str = "scopegate.toml";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The names of the files in the repository's directory `dir`, sorted.
fn files_in(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// A one-document YAML file of the repository, as JSON values.
fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `kubernetes-validate`: `SCOPEGATE_KUBERNETES_VALIDATE_BIN`, else what
/// `scripts/install-kubernetes-validate` installs in `.venv/`. Never skipped when missing.
fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("SCOPEGATE_KUBERNETES_VALIDATE_BIN") {
        return PathBuf::from(path);
    }
    let venv = Path::new(ROOT).join(".venv/bin/kubernetes-validate");
    assert!(
        venv.is_file(),
        "kubernetes-validate not found: run scripts/install-kubernetes-validate (or set \
         SCOPEGATE_KUBERNETES_VALIDATE_BIN). This test never skips."
    );
    venv
}

/// The base's manifests as `kustomization.yaml` lists them, each path with its document.
fn manifests() -> Vec<(String, Value)> {
    let kustomization = yaml(&format!("{BASE}/kustomization.yaml"));
    kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|name| {
            let path = format!("{BASE}/{}", name.as_str().expect("a file name"));
            let document = yaml(&path);
            (path, document)
        })
        .collect()
}

/// The one manifest of `kind`.
fn manifest(kind: &str) -> Value {
    let mut found: Vec<Value> = manifests()
        .into_iter()
        .map(|(_, document)| document)
        .filter(|document| document["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {BASE}");
    found.remove(0)
}

fn name(resource: &Value) -> &str {
    resource["metadata"]["name"].as_str().expect("a name")
}

/// The Deployment's only container.
fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn pod_labels(deployment: &Value) -> &serde_json::Map<String, Value> {
    deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels")
}

/// Whether every label of a `matchLabels` (or a Service selector) is on the pods.
fn selects_pods(selector: &Value, deployment: &Value) -> bool {
    let labels = pod_labels(deployment);
    let wanted = selector.as_object().expect("labels to match");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container's ports by name.
fn container_ports(deployment: &Value) -> BTreeMap<String, u64> {
    container(deployment)["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|port| {
            (
                port["name"].as_str().expect("every port named").to_string(),
                port["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect()
}

/// A port as a Service's targetPort or a NetworkPolicy names it: a number, or a container
/// port's name.
fn resolve(port: &Value, deployment: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().expect("a port number"),
        Value::String(named) => *container_ports(deployment)
            .get(named)
            .unwrap_or_else(|| panic!("no container port named {named}")),
        other => panic!("not a port: {other}"),
    }
}

/// The value after `flag` in a list of arguments.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

fn container_args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string argument").to_string())
        .collect()
}

/// The ConfigMap's configuration file, as text.
fn configured_text() -> String {
    manifest("ConfigMap")["data"][CONFIG_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has {CONFIG_KEY}"))
        .to_string()
}

/// The ConfigMap's configuration, compiled as `serve` would (no environment overrides: the
/// Deployment sets none, see below).
fn configured() -> Config {
    RawConfig::from_toml(&configured_text(), CONFIG_KEY)
        .and_then(RawConfig::compile)
        .unwrap_or_else(|e| panic!("{CONFIG_KEY}: {e}"))
}

fn tcp_listen(config: &Config) -> SocketAddr {
    match config.listen() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("the proxies reach scopegate over TCP, not {other}"),
    }
}

/// Runs `kubernetes-validate --strict` on `files` and accepts only if every resource in them
/// passed: the tool merely warns about a kind it has no schema for, which here is a failure (a
/// misspelt kind or apiVersion would otherwise pass unchecked).
fn validate(files: &[PathBuf]) -> Result<(), String> {
    // An external command could hang: bound this test as the fixtures bound theirs.
    crate::common::watchdog::arm();
    let out = Command::new(validator())
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let minor = KUBERNETES_VERSION.rsplit_once('.').expect("x.y.z").0;
    let passed = report
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.ends_with(&format!("against version {minor}")))
        .count();
    if out.status.success() && passed == files.len() && passed == report.lines().count() {
        Ok(())
    } else {
        Err(report)
    }
}

#[test]
fn the_kustomization_lists_every_manifest_and_generates_nothing() {
    let kustomization = yaml(&format!("{BASE}/kustomization.yaml"));
    let mut listed: Vec<String> = manifests().into_iter().map(|(path, _)| path).collect();
    listed.sort();
    let present: Vec<String> = files_in(BASE)
        .into_iter()
        .filter(|file| file.ends_with(".yaml") && file != "kustomization.yaml")
        .map(|file| format!("{BASE}/{file}"))
        .collect();
    assert_eq!(listed, present, "every manifest applied, and validated");
    for generated in ["configMapGenerator", "secretGenerator", "patches"] {
        assert!(
            kustomization.get(generated).is_none(),
            "{generated}: the files are what gets applied (and what this test checks)"
        );
    }
    for (path, document) in manifests() {
        assert!(
            document["metadata"].get("namespace").is_none(),
            "{path}: no namespace; apply with -n or an overlay"
        );
        assert_eq!(
            document["metadata"]["labels"]["app.kubernetes.io/name"], "scopegate",
            "{path}"
        );
    }
    // The image: the Deployment's and the kustomization's agree, tagged with this version.
    let image = container(&manifest("Deployment"))["image"]
        .as_str()
        .expect("image")
        .to_string();
    let (image_name, tag) = image.rsplit_once(':').expect("a tagged image");
    assert_eq!(tag, env!("CARGO_PKG_VERSION"));
    let images = kustomization["images"].as_array().expect("images");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], image_name);
    assert_eq!(images[0]["newTag"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_manifests_validate_against_the_pinned_kubernetes_schemas() {
    let files: Vec<PathBuf> = manifests()
        .iter()
        .map(|(path, _)| Path::new(ROOT).join(path))
        .collect();
    if let Err(report) = validate(&files) {
        panic!("kubernetes-validate {KUBERNETES_VERSION} --strict:\n{report}");
    }

    // The validator itself: each of these breakages must be refused.
    let deployment = read(&format!("{BASE}/deployment.yaml"));
    let broken = [
        (
            "a misspelt field (strict)",
            deployment.replacen("livenessProbe:", "livenesProbe:", 1),
        ),
        (
            "a gRPC probe given a port name",
            deployment.replacen("port: 9192", "port: health", 1),
        ),
        (
            "a kind the schemas do not know",
            deployment.replacen("kind: Deployment", "kind: Deploymnet", 1),
        ),
    ];
    let dir = tempfile::tempdir().expect("dir");
    for (what, text) in broken {
        assert_ne!(text, deployment, "{what}: the edit applies");
        let file = dir.path().join("deployment.yaml");
        std::fs::write(&file, text).expect("write");
        assert!(validate(&[file]).is_err(), "{what} must be refused");
    }
}

#[test]
fn the_configmap_holds_a_configuration_that_check_config_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join(CONFIG_KEY);
    std::fs::write(&file, configured_text()).expect("write");
    let mut check = crate::common::scopegate_command();
    check.args(["check-config", "--config"]).arg(&file);
    for (variable, _) in ENV_OVERRIDES {
        check.env_remove(variable);
    }
    let out = check.output().expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let config = configured();
    assert!(
        config.reload_on_change(),
        "a ConfigMap change must reach the pods"
    );
    assert!(config.metrics_listen().is_some(), "metrics for the scraper");
    assert!(
        config.health_listen().is_some(),
        "a plaintext port for the kubelet's probes"
    );
}

#[test]
fn ports_probes_and_the_config_path_agree_with_the_configuration() {
    let config = configured();
    let deployment = manifest("Deployment");
    let (listen, metrics, health) = (
        tcp_listen(&config),
        config.metrics_listen().expect("metrics_listen"),
        config.health_listen().expect("health_listen"),
    );
    for addr in [listen, metrics, health] {
        assert!(
            addr.ip().is_unspecified(),
            "{addr}: reachable from outside the pod"
        );
    }
    let expected: BTreeMap<String, u64> = [
        ("grpc", listen.port()),
        ("metrics", metrics.port()),
        ("health", health.port()),
    ]
    .into_iter()
    .map(|(name, port)| (name.to_string(), u64::from(port)))
    .collect();
    assert_eq!(container_ports(&deployment), expected);

    // Probes: the plaintext health port, the keys for readiness and not for liveness.
    let gate = container(&deployment);
    for (probe, service) in [
        ("readinessProbe", AUTHORIZATION_SERVICE),
        ("livenessProbe", LIVENESS_SERVICE),
    ] {
        let grpc = &gate[probe]["grpc"];
        assert_eq!(grpc["port"], u64::from(health.port()), "{probe}");
        assert_eq!(grpc["service"], service, "{probe}");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics.port().to_string()
    );

    // The Service: the gRPC port named for Istio's protocol selection, on the listen port.
    let service = manifest("Service");
    assert!(selects_pods(&service["spec"]["selector"], &deployment));
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2, "gRPC and metrics");
    let by_name = |prefix: &str| {
        ports
            .iter()
            .find(|p| p["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .unwrap_or_else(|| panic!("a Service port named {prefix}…"))
    };
    let grpc = by_name("grpc");
    assert_eq!(grpc["appProtocol"], "grpc");
    assert_eq!(resolve(&grpc["targetPort"], &deployment), expected["grpc"]);
    assert_eq!(grpc["port"], expected["grpc"]);
    let scraped = by_name("http");
    assert_eq!(
        resolve(&scraped["targetPort"], &deployment),
        expected["metrics"]
    );

    // The NetworkPolicy admits exactly the gRPC and metrics ports, on these pods.
    let policy = manifest("NetworkPolicy");
    assert!(selects_pods(
        &policy["spec"]["podSelector"]["matchLabels"],
        &deployment
    ));
    let mut admitted: Vec<u64> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().expect("each rule names its ports"))
        .map(|port| resolve(&port["port"], &deployment))
        .collect();
    admitted.sort();
    let mut wanted = vec![expected["grpc"], expected["metrics"]];
    wanted.sort();
    assert_eq!(admitted, wanted);

    // The configuration is mounted as a directory where `serve --config` reads it.
    let args = container_args(&deployment);
    let config_path = Path::new(arg(&args, "--config"));
    assert_eq!(
        config_path.file_name().and_then(|f| f.to_str()),
        Some(CONFIG_KEY)
    );
    let mounts = gate["volumeMounts"].as_array().expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str().map(Path::new) == config_path.parent())
        .expect("a volume mounted at the configuration's directory");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount is never updated"
    );
    assert_eq!(mount["readOnly"], true);
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["configMap"]["name"], name(&manifest("ConfigMap")));
    assert!(
        volume["configMap"].get("items").is_none(),
        "every key, under its own name"
    );
    // Nothing in the environment overrides the file.
    for env in gate["env"].as_array().into_iter().flatten() {
        let variable = env["name"].as_str().expect("name");
        assert!(
            variable != "SCOPEGATE_CONFIG"
                && !ENV_OVERRIDES.iter().any(|(name, _)| *name == variable),
            "{variable} would override {CONFIG_KEY}"
        );
    }
    // And the binary accepts the arguments (clap refuses unknown ones before --help).
    let out = crate::common::scopegate_command()
        .args(&args)
        .arg("--help")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "`scopegate {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(arg(&args, "--log-format"), "json");
}

/// The numeric user and group of the Dockerfile's (last) `USER` line.
fn image_user() -> (u64, u64) {
    let dockerfile = read("Dockerfile");
    let user = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    (
        uid.parse().expect("a numeric uid"),
        gid.parse().expect("a numeric gid"),
    )
}

#[test]
fn the_pod_runs_as_the_images_user_without_privileges() {
    let deployment = manifest("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let gate = container(&deployment);
    // A container's own setting wins over the pod's.
    let effective = |field: &str| {
        gate["securityContext"]
            .get(field)
            .unwrap_or(&pod["securityContext"][field])
            .clone()
    };
    let (uid, gid) = image_user();
    assert_ne!(uid, 0);
    assert_eq!(effective("runAsUser"), uid);
    assert_eq!(effective("runAsGroup"), gid);
    assert_eq!(effective("runAsNonRoot"), true);
    assert_eq!(effective("seccompProfile")["type"], "RuntimeDefault");
    let own = &gate["securityContext"];
    assert_eq!(own["allowPrivilegeEscalation"], false);
    assert_eq!(own["readOnlyRootFilesystem"], true);
    assert_ne!(own["privileged"], true);
    assert_eq!(own["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(own["capabilities"].get("add").is_none());

    let account = manifest("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], name(&account));
    assert_eq!(account["automountServiceAccountToken"], false);
    assert_eq!(pod["automountServiceAccountToken"], false);
    for resource in ["cpu", "memory"] {
        for bound in ["requests", "limits"] {
            assert!(
                gate["resources"][bound].get(resource).is_some(),
                "{bound}.{resource}"
            );
        }
    }
}

#[test]
fn shutdown_replicas_and_disruptions_hold_together() {
    let deployment = manifest("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let gate = container(&deployment);
    // The kubelet must not kill scopegate before its preStop pause and its drain are over.
    let pause = gate["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep (the image has no shell)");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pause + DRAIN_TIMEOUT.as_secs(),
        "{grace} s must exceed the preStop {pause} s and the {DRAIN_TIMEOUT:?} drain"
    );
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "the autoscaler owns the replica count"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );

    let autoscaler = manifest("HorizontalPodAutoscaler");
    let target = &autoscaler["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["name"], name(&deployment));
    let min = autoscaler["spec"]["minReplicas"]
        .as_u64()
        .expect("minReplicas");
    assert!(min >= 2, "two pods at least");
    let metrics = autoscaler["spec"]["metrics"].as_array().expect("metrics");
    assert!(
        metrics
            .iter()
            .any(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
    );

    let budget = manifest("PodDisruptionBudget");
    assert_eq!(
        budget["spec"]["selector"], deployment["spec"]["selector"],
        "the budget covers these pods"
    );
    let unavailable = budget["spec"]["maxUnavailable"]
        .as_u64()
        .expect("maxUnavailable");
    assert!(unavailable < min, "a disruption leaves a pod serving");
    assert_eq!(budget["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");

    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    let across_nodes = spread
        .iter()
        .find(|c| c["topologyKey"] == "kubernetes.io/hostname")
        .expect("a spread across nodes");
    assert_eq!(across_nodes["whenUnsatisfiable"], "DoNotSchedule");
    assert!(selects_pods(
        &across_nodes["labelSelector"]["matchLabels"],
        &deployment
    ));
}

/// A duration as Istio writes it (`0.5s`, `500ms`).
fn istio_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    let seconds: f64 = text
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a duration: {text}"));
    Duration::from_secs_f64(seconds)
}

#[test]
fn the_istio_resources_carry_what_scopegate_needs() {
    let values = yaml("deploy/istio/istiod-values.yaml");
    let providers = values["meshConfig"]["extensionProviders"]
        .as_array()
        .expect("meshConfig.extensionProviders");
    assert_eq!(providers.len(), 1);
    let provider = &providers[0];
    let grpc = &provider["envoyExtAuthzGrpc"];
    assert_eq!(grpc["timeout"], "0.5s", "Istio's default is 600 s");
    assert_eq!(grpc["failOpen"], false);
    assert_eq!(
        grpc["statusOnError"], "503",
        "a string, and not Istio's default 403"
    );
    // scopegate answers in-band before the proxy gives up on it.
    let timeout = istio_duration(grpc["timeout"].as_str().expect("timeout"));
    assert!(configured().server().check_timeout < timeout);
    // It names the Service of deploy/kubernetes and its gRPC port.
    let service = manifest("Service");
    let host = grpc["service"].as_str().expect("service");
    assert!(
        host.starts_with(&format!("{}.", name(&service))) && host.ends_with(".svc.cluster.local"),
        "{host}"
    );
    let grpc_port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "grpc")
        .expect("the grpc port")["port"]
        .clone();
    assert_eq!(grpc["port"], grpc_port);

    let policy = yaml("deploy/istio/authorizationpolicy.yaml");
    assert_eq!(policy["kind"], "AuthorizationPolicy");
    assert_eq!(policy["apiVersion"], "security.istio.io/v1");
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    assert_eq!(policy["spec"]["provider"]["name"], provider["name"]);
    assert!(
        !policy["spec"]["rules"]
            .as_array()
            .expect("rules")
            .is_empty(),
        "CUSTOM without rules matches nothing"
    );
    let workload = &policy["spec"]["selector"]["matchLabels"];
    assert!(
        workload
            .as_object()
            .is_some_and(|labels| !labels.is_empty()),
        "one workload, not the namespace"
    );

    let filter = yaml("deploy/istio/envoyfilter.yaml");
    assert_eq!(filter["kind"], "EnvoyFilter");
    assert_eq!(
        &filter["spec"]["workloadSelector"]["labels"], workload,
        "the workload that the policy protects"
    );
    let patches = filter["spec"]["configPatches"]
        .as_array()
        .expect("configPatches");
    assert_eq!(patches.len(), 1);
    let patch = &patches[0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(patch["patch"]["operation"], "MERGE");
    let manager = &patch["patch"]["value"]["typed_config"];
    assert_eq!(
        manager["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    assert_eq!(
        manager["common_http_protocol_options"]["headers_with_underscores_action"],
        "REJECT_REQUEST"
    );

    // Every file there is one of these.
    let files = files_in("deploy/istio");
    assert_eq!(
        files,
        [
            "authorizationpolicy.yaml",
            "destinationrule.yaml",
            "envoyfilter.yaml",
            "istiod-values.yaml"
        ]
    );
}

/// The README's fenced YAML blocks, as written.
fn readme_yaml_blocks() -> Vec<String> {
    let readme = read("README.md");
    readme
        .split("```yaml\n")
        .skip(1)
        .map(|rest| {
            rest.split_once("```")
                .map(|(block, _)| block.to_string())
                .expect("a closed yaml block")
        })
        .collect()
}

#[test]
fn the_destinationrule_closes_idle_connections_first_and_originates_tls_with_scopegate() {
    let path = "deploy/istio/destinationrule.yaml";
    let text = read(path);
    let rule = yaml(path);
    assert_eq!(rule["kind"], "DestinationRule");
    assert_eq!(rule["apiVersion"], "networking.istio.io/v1");
    // The host the mesh's provider calls, so that the proxies' Checks are what it shapes.
    let values = yaml("deploy/istio/istiod-values.yaml");
    let provider = &values["meshConfig"]["extensionProviders"][0]["envoyExtAuthzGrpc"];
    assert_eq!(rule["spec"]["host"], provider["service"]);
    assert!(
        rule["spec"].get("workloadSelector").is_none() && rule["spec"].get("subsets").is_none(),
        "one rule for every proxy that sends Checks"
    );

    // The proxies end idle connections before scopegate would.
    let config = configured();
    let policy = &rule["spec"]["trafficPolicy"];
    let idle = istio_duration(
        policy["connectionPool"]["http"]["idleTimeout"]
            .as_str()
            .expect("connectionPool.http.idleTimeout"),
    );
    assert!(
        idle < config.server().idle_timeout,
        "the proxies' idleTimeout {idle:?} must be below server.idle_timeout_seconds {:?}",
        config.server().idle_timeout
    );

    // TLS as scopegate serves it: plaintext while the ConfigMap's [tls] is commented out.
    assert_eq!(
        policy["tls"]["mode"],
        if config.tls().is_some() {
            "SIMPLE"
        } else {
            "DISABLE"
        }
    );
    // The commented block that replaces it once [tls] is on originates TLS and checks the
    // certificate against a CA and for a name.
    let commented: String = text
        .lines()
        .skip_while(|line| line.trim() != "# tls:")
        .take_while(|line| line.trim_start().starts_with('#'))
        .map(|line| format!("{}\n", line.replacen("# ", "", 1)))
        .collect();
    let origination: Value = serde_yaml_ng::from_str(&commented)
        .unwrap_or_else(|e| panic!("{path}: the commented tls block: {e}\n{commented}"));
    let tls = &origination["tls"];
    assert_eq!(tls["mode"], "SIMPLE", "{commented}");
    assert!(
        tls["caCertificates"]
            .as_str()
            .is_some_and(|f| f.starts_with('/'))
    );
    let sni = tls["sni"].as_str().expect("sni");
    assert!(
        tls["subjectAltNames"]
            .as_array()
            .expect("subjectAltNames")
            .contains(&Value::from(sni)),
        "the certificate is checked for the name the proxies ask for"
    );
    let host = rule["spec"]["host"].as_str().expect("host");
    assert!(host.starts_with(sni), "{sni} names the Service {host}");

    // README shows this file, not a second DestinationRule of its own.
    let blocks = readme_yaml_blocks();
    assert!(
        blocks.contains(&text),
        "README's Istio section shows {path} as it is"
    );
    assert_eq!(
        blocks
            .iter()
            .filter(|block| block.contains("kind: DestinationRule"))
            .count(),
        1,
        "one DestinationRule for the host"
    );
}

#[test]
fn the_readmes_allow_policy_admits_what_the_custom_policy_protects() {
    // Behind a mesh-wide allow-nothing, a request scopegate allows still needs an ALLOW policy
    // that matches it: the one README gives must select the CUSTOM policy's workload.
    let custom = yaml("deploy/istio/authorizationpolicy.yaml");
    let allows: Vec<Value> = readme_yaml_blocks()
        .iter()
        .filter(|block| block.contains("action: ALLOW"))
        .map(|block| serde_yaml_ng::from_str(block).expect("README's ALLOW policy parses"))
        .collect();
    assert_eq!(allows.len(), 1, "README shows one ALLOW policy");
    let allow = &allows[0];
    assert_eq!(allow["kind"], "AuthorizationPolicy");
    assert_eq!(allow["apiVersion"], custom["apiVersion"]);
    assert_eq!(allow["spec"]["action"], "ALLOW");
    assert_eq!(allow["spec"]["selector"], custom["spec"]["selector"]);
    assert_ne!(name(allow), name(&custom), "a policy beside the CUSTOM one");
    assert!(
        !allow["spec"]["rules"].as_array().expect("rules").is_empty(),
        "an ALLOW policy without rules allows nothing"
    );
}

/// Bytes in a size as SECURITY.md writes it (`64 KiB`, `32 MiB`, `12.6 GiB`).
fn readme_size(text: &str) -> f64 {
    let (number, unit) = text.trim().split_once(' ').expect("a number and a unit");
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("a size: {text}"));
    let unit = match unit {
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("a unit: {other}"),
    };
    number * unit
}

/// Bytes in a Kubernetes memory quantity with a binary suffix (`64Mi`, `1Gi`).
fn quantity(text: &str) -> u64 {
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(at);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("a quantity: {text}"));
    let unit = match suffix {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("{text}: a binary suffix, not {other:?}"),
    };
    number * unit
}

/// The memory items of SECURITY.md's Limits section: (first column, second column) of each row.
fn readme_memory_items() -> Vec<(String, String)> {
    let security = read("SECURITY.md");
    let table = security
        .split_once("| memory item | counted as |")
        .expect("SECURITY.md's Limits has the memory table")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect()
}

/// What clients can make one process hold with `config`'s limits, by SECURITY.md's memory items.
fn worst_case(items: &[(String, String)], config: &scopegate::config::Config) -> f64 {
    let limits = config.server();
    let item = |start: &str| {
        items
            .iter()
            .find(|(what, _)| what.starts_with(start))
            .map(|(_, counted)| counted.as_str())
            .unwrap_or_else(|| panic!("SECURITY.md's memory table has a row {start}…"))
    };
    assert_eq!(item("one request message"), "`server.max_request_bytes`");
    let at_rest = readme_size(item("at rest"));
    assert_eq!(item("token cache"), "`token_cache_max_bytes`");
    let cache = config.token_cache_max_bytes() as f64;
    assert_eq!(
        item("introspection caches"),
        "1.25 × `token_cache_max_bytes`"
    );
    let introspects = config.issuers().iter().any(|i| i.introspection.is_some());
    let introspection = if introspects { 1.25 * cache } else { 0.0 };
    assert_eq!(item("DPoP replay cache"), "`dpop_replay_cache_bytes`");
    let replay = config.dpop().replay_cache_bytes() as f64;
    let connection = readme_size(item("one connection"));
    let streams = f64::from(limits.max_concurrent_streams);
    at_rest
        + cache
        + introspection
        + replay
        + limits.max_connections as f64 * (connection + streams * limits.max_request_bytes as f64)
}

#[test]
fn the_memory_limit_holds_the_worst_case_the_configured_limits_allow() {
    let items = readme_memory_items();
    assert_eq!(items.len(), 6, "{items:?}");
    let config = configured();
    let worst = worst_case(&items, &config);
    let deployment = manifest("Deployment");
    let resources = &container(&deployment)["resources"];
    let limit = quantity(
        resources["limits"]["memory"]
            .as_str()
            .expect("a memory limit"),
    );
    let request = quantity(
        resources["requests"]["memory"]
            .as_str()
            .expect("a memory request"),
    );
    let mib = |bytes: f64| bytes / f64::from(1u32 << 20);
    assert!(
        worst <= limit as f64,
        "the ConfigMap's limits let clients make a pod hold {} MiB; its memory limit is {} MiB",
        mib(worst),
        mib(limit as f64)
    );
    assert!(request <= limit);
    // configmap.yaml writes the arithmetic out, with its own cache budget; keep it true.
    let text = read(&format!("{BASE}/configmap.yaml"));
    let stated = format!("= {} MiB,", mib(worst));
    assert!(text.contains(&stated), "configmap.yaml states {stated}");
    let cache = format!("{} MiB", mib(config.token_cache_max_bytes() as f64));
    assert!(
        text.contains(&format!("counts the cache at {cache}")),
        "{cache}"
    );

    // SECURITY.md's figure for the defaults holds too: the ConfigMap's text without its three
    // connection limits and its cache budget compiles to them.
    let defaults_text: String = configured_text()
        .lines()
        .filter(|line| {
            ![
                "max_connections",
                "max_concurrent_streams",
                "max_request_bytes",
                "token_cache_max_bytes",
            ]
            .iter()
            .any(|key| line.starts_with(key))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let defaults = RawConfig::from_toml(&defaults_text, CONFIG_KEY)
        .and_then(RawConfig::compile)
        .expect("compiles");
    let figure = format!(
        "{:.1} GiB",
        worst_case(&items, &defaults) / f64::from(1u32 << 30)
    );
    assert!(
        read("SECURITY.md").contains(&format!("the defaults that is {figure}")),
        "SECURITY.md's Limits states {figure} for the defaults"
    );
}

/// Applies one component patch (a JSON Patch, RFC 6902, of `add` operations) to `target`.
fn apply_patch(target: &mut Value, patch: &str) {
    let operations: Vec<Value> = serde_yaml_ng::from_str(patch).expect("a JSON Patch");
    assert!(!operations.is_empty());
    for operation in operations {
        assert_eq!(operation["op"], "add", "{operation}");
        let path = operation["path"].as_str().expect("path");
        let (parent, last) = path.rsplit_once('/').expect("a JSON Pointer");
        let parent = target
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{path}: no {parent} in the base"));
        let value = operation["value"].clone();
        match (parent, last) {
            (Value::Array(items), "-") => items.push(value),
            (Value::Object(fields), key) => {
                fields.insert(key.to_string(), value);
            }
            (_, _) => panic!("{path}: an append to a list or a field of an object"),
        }
    }
}

#[test]
fn each_component_patches_the_base_into_manifests_that_validate() {
    let config = configured();
    let deployment = manifest("Deployment");
    let readme = read("README.md");
    let components = files_in(&format!("{BASE}/components"));
    assert!(!components.is_empty());
    let dir = tempfile::tempdir().expect("dir");
    let mut files = Vec::new();
    for component in &components {
        let path = format!("{BASE}/components/{component}/kustomization.yaml");
        assert_eq!(
            files_in(&format!("{BASE}/components/{component}")),
            ["kustomization.yaml"],
            "{path}: the patches live in the component"
        );
        let document = yaml(&path);
        assert_eq!(document["apiVersion"], "kustomize.config.k8s.io/v1alpha1");
        assert_eq!(document["kind"], "Component", "{path}");
        assert!(
            readme.contains(&format!("`components/{component}`")),
            "README names {component}"
        );
        let patches = document["patches"].as_array().expect("patches");
        assert!(!patches.is_empty(), "{path}");
        for patch in patches {
            let kind = patch["target"]["kind"].as_str().expect("target.kind");
            let mut patched = manifest(kind);
            assert_eq!(patch["target"]["name"], name(&patched), "{path}");
            let before = patched.clone();
            apply_patch(
                &mut patched,
                patch["patch"].as_str().expect("an inline patch"),
            );
            match kind {
                // Only more peers for the Checks: the rule of the gRPC port gains `from`
                // entries, each a namespace and a pod selector, and nothing else changes.
                "NetworkPolicy" => {
                    let rules = |policy: &Value| policy["spec"]["ingress"].clone();
                    let (old, new) = (rules(&before), rules(&patched));
                    assert_eq!(old.as_array().map(Vec::len), new.as_array().map(Vec::len));
                    let grpc = &new[0];
                    let ports: Vec<u64> = grpc["ports"]
                        .as_array()
                        .expect("ports")
                        .iter()
                        .map(|port| resolve(&port["port"], &deployment))
                        .collect();
                    assert_eq!(ports, [u64::from(tcp_listen(&config).port())], "{path}");
                    let peers = grpc["from"].as_array().expect("from");
                    let old_peers = old[0]["from"].as_array().expect("from");
                    assert!(peers.len() > old_peers.len(), "{path}");
                    assert_eq!(&peers[..old_peers.len()], &old_peers[..]);
                    for peer in &peers[old_peers.len()..] {
                        assert!(peer.get("namespaceSelector").is_some(), "{path}: {peer}");
                        assert!(
                            peer["podSelector"]["matchLabels"]
                                .as_object()
                                .is_some_and(|labels| !labels.is_empty()),
                            "{path}: {peer} names the proxies' pods"
                        );
                    }
                    let mut rest = patched.clone();
                    rest["spec"]["ingress"][0]["from"] = old[0]["from"].clone();
                    assert_eq!(rest, before, "{path}: only peers are added");
                }
                // A second metric: the open connections per pod, aiming below the cap.
                "HorizontalPodAutoscaler" => {
                    let metrics = patched["spec"]["metrics"].as_array().expect("metrics");
                    assert_eq!(
                        &metrics[..1],
                        before["spec"]["metrics"].as_array().expect("metrics")
                    );
                    let pods = metrics
                        .iter()
                        .find(|m| m["type"] == "Pods")
                        .expect("a Pods metric");
                    assert_eq!(pods["pods"]["metric"]["name"], "scopegate_connections");
                    assert_eq!(pods["pods"]["target"]["type"], "AverageValue");
                    let target: usize = pods["pods"]["target"]["averageValue"]
                        .as_str()
                        .expect("a quantity")
                        .parse()
                        .expect("a whole number of connections");
                    assert!(
                        target < config.server().max_connections,
                        "{path}: pods added before the cap of {} is reached",
                        config.server().max_connections
                    );
                }
                other => panic!("{path}: patches a {other}"),
            }
            let file = dir.path().join(format!("{component}-{kind}.yaml"));
            std::fs::write(&file, serde_yaml_ng::to_string(&patched).expect("yaml"))
                .expect("write");
            files.push(file);
        }
    }
    if let Err(report) = validate(&files) {
        panic!(
            "kubernetes-validate {KUBERNETES_VERSION} --strict on the patched manifests:\n{report}"
        );
    }
}

/// The status `service` reports on the plaintext health listener at `addr`.
async fn health_status(addr: &str, service: &str) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the health listener");
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_or(-1, |answer| answer.into_inner().status)
}

#[tokio::test]
async fn the_deployments_probes_answer_as_the_kubelet_needs_during_an_idp_outage() {
    use tonic_health::pb::health_check_response::ServingStatus;
    // The ConfigMap's configuration as it is, on loopback, trusting the test issuer whose
    // JWKS endpoint fails: an identity provider outage from the first second.
    let key = TestKey::generate("k8s-kid");
    let jwks = JwksServer::start(Reply::Respond(503, vec![], vec![])).await;
    let replacements = [
        ("listen = ", "listen = \"127.0.0.1:0\"".to_string()),
        (
            "metrics_listen = ",
            "metrics_listen = \"127.0.0.1:0\"".into(),
        ),
        ("health_listen = ", "health_listen = \"127.0.0.1:0\"".into()),
        (
            "issuer = ",
            format!("issuer = \"{ISSUER}\"\njwks_uri = \"{}\"", jwks.url()),
        ),
        ("audience = ", format!("audience = \"{AUDIENCE}\"")),
    ];
    let mut text = String::new();
    for line in configured_text().lines() {
        let replaced = replacements
            .iter()
            .find(|(start, _)| line.starts_with(start));
        text.push_str(replaced.map_or(line, |(_, new)| new.as_str()));
        text.push('\n');
    }
    for (start, new) in &replacements {
        assert!(text.contains(new.as_str()), "{start}… replaced");
    }
    let binary = Binary::start("kubernetes", &text, "info", None).await;
    let line = binary
        .wait_for_log("grpc.health.v1 only", Duration::from_secs(10))
        .await;
    let health = listen_address(&line).expect("the health listener's address");

    let gate = container(&manifest("Deployment")).clone();
    let service_of = |probe: &str| {
        gate[probe]["grpc"]["service"]
            .as_str()
            .expect("a service name")
            .to_string()
    };
    let (readiness, liveness) = (service_of("readinessProbe"), service_of("livenessProbe"));
    let serving = ServingStatus::Serving as i32;
    assert_eq!(
        health_status(&health, &readiness).await,
        ServingStatus::NotServing as i32,
        "no keys: out of the Service's endpoints"
    );
    assert_eq!(
        health_status(&health, &liveness).await,
        serving,
        "no keys, but no restart either"
    );

    // The keys arrive: the pod becomes ready, and stays live.
    jwks.set(Reply::json(&jwks_of(&[&key])));
    eventually("readiness SERVING", Duration::from_secs(30), || async {
        health_status(&health, &readiness).await == serving
    })
    .await;
    assert_eq!(health_status(&health, &liveness).await, serving);
}

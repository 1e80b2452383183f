//! The `scopegate` binary: parses the command line and hands over to the library.

use std::io::IsTerminal as _;
#[cfg(feature = "dev")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use scopegate::config::Config;
#[cfg(feature = "dev")]
use scopegate::dev::issuer::DevAlgorithm;

/// Envoy ext_authz service that verifies OAuth 2.0 JWT access tokens and enforces route scopes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service (Authorization, grpc.health.v1, reflection).
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "SCOPEGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SCOPEGATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a configuration and print the compiled rules; exit status 0 if valid, 1 if not.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, env = "SCOPEGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print `[[rules]]` for the operations of an OpenAPI 3.0/3.1 document (YAML or JSON), to
    /// append to a configuration; exit status 1, naming the operation, where the document's
    /// security cannot be written as a rule.
    OpenapiRules {
        /// The OpenAPI document.
        spec: PathBuf,
        /// The oauth2 or openIdConnect security scheme whose tokens scopegate verifies (needed
        /// when the document uses several).
        #[arg(long)]
        scheme: Option<String>,
        /// Prefix of every rule path; default: the path of the first `servers` URL. "" for none.
        #[arg(long)]
        base_path: Option<String>,
        /// Write every rule with `shadow = true` (reported, not enforced): step one of a rollout.
        #[arg(long)]
        shadow: bool,
    },
    // Development only: left out of the production build (`--no-default-features`).
    #[cfg(feature = "dev")]
    /// Development token issuer (JWKS, discovery, POST /oauth/token, /oauth/introspect,
    /// /oauth/revoke). NOT FOR PRODUCTION.
    DevIssuer {
        /// Listen address; loopback only unless --allow-non-loopback.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The `iss` of minted tokens (and the base of the discovery URLs).
        #[arg(long, default_value = "http://127.0.0.1:8081/")]
        issuer: String,
        /// Signing algorithm: RS256, ES256 or EdDSA.
        #[arg(long, default_value = "RS256", value_parser = parse_alg)]
        alg: DevAlgorithm,
        /// PKCS#8 DER key file; created on first use. Default: .demo/dev-issuer-key.der for
        /// RS256, .demo/dev-issuer-es256-key.der or .demo/dev-issuer-eddsa-key.der otherwise.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Allow a non-loopback listen address (inside an isolated network only).
        #[arg(long)]
        allow_non_loopback: bool,
        /// The client id allowed to call /oauth/introspect and /oauth/revoke.
        #[arg(long, default_value = scopegate::dev::introspection::DEFAULT_CLIENT_ID)]
        introspection_client_id: String,
        /// A file holding that client's secret. Default: the built-in demo secret
        /// `demo-introspection-secret`, for demos only.
        #[arg(long)]
        introspection_client_secret_file: Option<PathBuf>,
    },
    // Development only: left out of the production build (`--no-default-features`).
    #[cfg(feature = "dev")]
    /// Mint a token with the development issuer's key and print it (for scripts).
    MintToken {
        /// Signing algorithm: RS256, ES256 or EdDSA (the dev issuer's).
        #[arg(long, default_value = "RS256", value_parser = parse_alg)]
        alg: DevAlgorithm,
        /// PKCS#8 DER key file (the dev issuer's); created if missing. Default as for
        /// dev-issuer.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// `iss`.
        #[arg(long, default_value = "http://127.0.0.1:8081/")]
        issuer: String,
        /// `aud`.
        #[arg(long)]
        audience: String,
        /// Space-separated `scope`.
        #[arg(long, default_value = "")]
        scope: String,
        /// `sub`.
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// Lifetime in seconds (at most 366 days).
        #[arg(
            long,
            default_value_t = scopegate::dev::issuer::DEFAULT_EXPIRES_IN,
            value_parser = clap::value_parser!(u64).range(1..=scopegate::dev::issuer::MAX_EXPIRES_IN)
        )]
        expires_in: u64,
        /// Extra claim as NAME=JSON (e.g. --claim 'nbf=0'); repeatable; overrides the above.
        #[arg(long = "claim", value_parser = parse_claim)]
        claims: Vec<(String, serde_json::Value)>,
        /// How many tokens to print, one per line, each with its own `jti` (for load tests
        /// with many distinct tokens).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// Mint an opaque token (`sgo_…`) that only the dev issuer with the same key file can
        /// read, through its /oauth/introspect.
        #[arg(long)]
        opaque: bool,
        /// Bind the token to this DPoP key (`cnf.jkt`): its RFC 7638 thumbprint, as
        /// `dpop-proof --print-jkt` prints it.
        #[arg(long, value_parser = scopegate::dev::dpop::parse_thumbprint)]
        dpop_jkt: Option<String>,
        /// Bind the token to this client certificate (`cnf["x5t#S256"]`): the base64url
        /// SHA-256 of its DER.
        #[arg(long, value_parser = scopegate::dev::dpop::parse_thumbprint, conflicts_with = "dpop_jkt")]
        cnf_x5t: Option<String>,
    },
    // Development only: left out of the production build (`--no-default-features`).
    #[cfg(feature = "dev")]
    /// Print a fresh DPoP proof (RFC 9449) for one request, or the DPoP key's thumbprint. NOT
    /// FOR PRODUCTION: the key sits unencrypted in a file.
    DpopProof {
        /// PKCS#8 DER P-256 key file; created (mode 0600) on first use.
        #[arg(long, default_value = scopegate::dev::dpop::DEFAULT_KEY_FILE)]
        key_file: PathBuf,
        /// Print the key's RFC 7638 thumbprint (for `mint-token --dpop-jkt`) instead of a proof.
        #[arg(long, conflicts_with_all = ["method", "url", "token"])]
        print_jkt: bool,
        /// The request method (`htm`).
        #[arg(long, required_unless_present = "print_jkt")]
        method: Option<String>,
        /// The request URL (`htu`; any query or fragment is left out).
        #[arg(long, required_unless_present = "print_jkt")]
        url: Option<String>,
        /// The access token sent with the proof, for its hash (`ath`); none for a token request.
        #[arg(long)]
        token: Option<String>,
    },
    // Development only: left out of the production build (`--no-default-features`).
    #[cfg(feature = "dev")]
    /// The demo upstream API that stands behind Envoy in the demo.
    DemoUpstream {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
    },
    /// Probe health for container healthchecks; exit status 0 if healthy.
    Health {
        /// scopegate's gRPC address (HOST:PORT, or unix:PATH): grpc.health.v1 must say SERVING.
        #[arg(long, conflicts_with = "http", required_unless_present = "http")]
        grpc: Option<String>,
        /// An HTTP URL that must answer 2xx.
        #[arg(long)]
        http: Option<String>,
        /// Speak TLS to --grpc, trusting this PEM CA file.
        #[arg(long, requires = "grpc")]
        tls_ca: Option<PathBuf>,
        /// PEM client certificate, for a listener that requires one (with --tls-key).
        #[arg(long, requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<PathBuf>,
        /// PEM client key (with --tls-cert).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The name the server certificate must hold; default: the host of --grpc.
        #[arg(long, requires = "tls_ca")]
        tls_server_name: Option<String>,
    },
    /// Decide one request offline, the way `serve` would, and say why. Exit status 0 if
    /// allowed, 3 if denied (503 included), 1 on a configuration error, 2 on a usage error.
    /// The token is never printed.
    Explain {
        /// TOML configuration file.
        #[arg(long, env = "SCOPEGATE_CONFIG")]
        config: Option<PathBuf>,
        /// HTTP method, as the client sends it.
        #[arg(long)]
        method: String,
        /// Request path, as the client sends it (query allowed).
        #[arg(long)]
        path: String,
        /// The Bearer token (visible in `ps`; prefer --token-file).
        #[arg(long, group = "credentials")]
        token: Option<String>,
        /// A file holding the token, or `-` for standard input.
        #[arg(long, group = "credentials")]
        token_file: Option<PathBuf>,
        /// A token's claims as a JSON object: every check but the signature applies.
        #[arg(long, group = "credentials")]
        claims: Option<String>,
        /// A DPoP proof sent with the token (RFC 9449): the token goes under the DPoP scheme
        /// and the answer says which binding check failed, if one does.
        #[arg(long, requires = "credentials", conflicts_with = "claims")]
        dpop_proof: Option<String>,
        /// Another request header, `NAME: VALUE` (repeatable): `Origin` and
        /// `Access-Control-Request-Method` make an OPTIONS request a CORS preflight.
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// The client certificate the request came with (a PEM file): a certificate-bound
        /// token is checked against it, as against the one Envoy passes.
        #[arg(long = "client-cert")]
        client_cert: Option<PathBuf>,
        /// Print the explanation as one JSON object.
        #[arg(long)]
        json: bool,
    },
    // Development only: left out of the production build (`--no-default-features`).
    #[cfg(feature = "dev")]
    /// Write a throw-away CA, server and client certificates for TLS demos and tests. NOT FOR
    /// PRODUCTION.
    DevCerts {
        /// Directory to write ca.crt, server.crt/.key and client.crt/.key into.
        #[arg(long, default_value = ".demo/certs")]
        out: PathBuf,
        /// Host names and addresses of the server certificate (repeatable); default
        /// localhost, 127.0.0.1, ::1 and scopegate.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain {
            config,
            method,
            path,
            token,
            token_file,
            claims,
            dpop_proof,
            headers,
            client_cert,
            json,
        } => {
            let credentials = (token, token_file, claims);
            let request = (method, path, headers, client_cert, dpop_proof);
            return explain(config, request, credentials, json).unwrap_or_else(|e| {
                eprintln!("scopegate: {e:#}");
                ExitCode::FAILURE
            });
        }
        Command::Serve { config, log_format } => serve(config, log_format),
        Command::CheckConfig { config } => check_config(config),
        Command::OpenapiRules {
            spec,
            scheme,
            base_path,
            shadow,
        } => openapi_rules(&spec, scheme, base_path, shadow),
        #[cfg(feature = "dev")]
        Command::DevIssuer {
            listen,
            issuer,
            alg,
            key_file,
            allow_non_loopback,
            introspection_client_id,
            introspection_client_secret_file,
        } => dev_issuer(
            listen,
            &issuer,
            alg,
            &key_file.unwrap_or_else(|| default_key_file(alg)),
            allow_non_loopback,
            (introspection_client_id, introspection_client_secret_file),
        ),
        #[cfg(feature = "dev")]
        Command::MintToken {
            alg,
            key_file,
            issuer,
            audience,
            scope,
            subject,
            expires_in,
            claims,
            count,
            opaque,
            dpop_jkt,
            cnf_x5t,
        } => mint_token(
            &key_file.unwrap_or_else(|| default_key_file(alg)),
            alg,
            &issuer,
            &scopegate::dev::issuer::Mint {
                subject,
                audience,
                scope,
                expires_in,
                extra: scopegate::dev::dpop::cnf_claim(dpop_jkt, cnf_x5t)
                    .into_iter()
                    .chain(claims)
                    .collect(),
            },
            count,
            opaque,
        ),
        #[cfg(feature = "dev")]
        Command::DpopProof {
            key_file,
            print_jkt,
            method,
            url,
            token,
        } => scopegate::dev::dpop::command(
            &key_file,
            print_jkt,
            method.as_deref().zip(url.as_deref()),
            token.as_deref(),
        )
        .map(|line| println!("{line}"))
        .map_err(Into::into),
        #[cfg(feature = "dev")]
        Command::DemoUpstream { listen } => demo_upstream(listen),
        Command::Health {
            grpc,
            http,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
        } => {
            let tls = tls_ca.map(|ca_file| scopegate::tools::probe::ProbeTls {
                ca_file,
                client: tls_cert.zip(tls_key),
                server_name: tls_server_name,
            });
            health(grpc, http, tls)
        }
        #[cfg(feature = "dev")]
        Command::DevCerts { out, hosts } => dev_certs(&out, hosts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scopegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref()).context("invalid configuration")?;
    // The files named in [tls] must be usable too, as `serve` will require.
    if let Some(files) = config.tls() {
        scopegate::net::tls::server_config(files).context("invalid configuration")?;
    }
    println!("{config}");
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    println!("configuration OK");
    Ok(())
}

/// What `explain` is asked about: method, path, extra headers, the client certificate file
/// (`--client-cert`) and the DPoP proof (`--dpop-proof`).
type ExplainedRequest = (
    String,
    String,
    Vec<(String, String)>,
    Option<PathBuf>,
    Option<String>,
);

/// `explain`: the exit status says the answer (0 allowed, 3 denied); errors are 1.
fn explain(
    config: Option<PathBuf>,
    (method, path, headers, client_cert, dpop_proof): ExplainedRequest,
    (token, token_file, claims): (Option<String>, Option<PathBuf>, Option<String>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    use scopegate::tools::explain::{Credentials, Request};
    let config = Config::load(config.as_deref()).context("invalid configuration")?;
    let credentials = match (token, token_file, claims) {
        (Some(token), _, _) => Credentials::Token(token),
        (_, Some(file), _) => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read the token from standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read the token file {}", file.display()))?
            };
            Credentials::Token(text.trim().to_owned())
        }
        (_, _, Some(claims)) => Credentials::Claims(claims),
        (None, None, None) => Credentials::None,
    };
    let client_certificate = client_cert
        .map(|file| {
            std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the client certificate {}", file.display()))
        })
        .transpose()?;
    let request = Request {
        method,
        path,
        credentials,
        headers,
        dpop_proof,
        client_certificate,
    };
    let explanation = runtime()?.block_on(scopegate::tools::explain::explain(&config, &request))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{explanation}");
    }
    Ok(if explanation.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn openapi_rules(
    spec: &std::path::Path,
    scheme: Option<String>,
    base_path: Option<String>,
    shadow: bool,
) -> anyhow::Result<()> {
    let options = scopegate::tools::openapi::Options {
        scheme,
        base_path,
        shadow,
    };
    let text = scopegate::tools::openapi::rules_from_file(spec, &options)
        .with_context(|| format!("cannot write rules for {}", spec.display()))?;
    print!("{text}");
    Ok(())
}

fn serve(path: Option<PathBuf>, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    // Validate before any port is bound or any task is started.
    let config = Config::load(path.as_deref()).context("invalid configuration")?;
    let mut builder = match config.server().worker_threads {
        0 => tokio::runtime::Builder::new_multi_thread(),
        // One thread: the current-thread scheduler, whose run queue is strictly first-in
        // first-out. The multi-thread scheduler's LIFO slot runs a connection's task right after
        // each Check that wakes it, so every answer left in its own write(2); in FIFO order the
        // Checks that arrived together finish first and their answers leave in one.
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Signal handlers first, so a SIGTERM during start-up still drains.
        let shutdown = scopegate::serve::server::shutdown_signal();
        scopegate::serve::server::run(config, path, shutdown).await
    })?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

#[cfg(feature = "dev")]
/// One key file per algorithm, so switching `--alg` never meets a key of the wrong kind.
fn default_key_file(alg: DevAlgorithm) -> PathBuf {
    match alg {
        DevAlgorithm::Rs256 => PathBuf::from(".demo/dev-issuer-key.der"),
        other => PathBuf::from(format!(
            ".demo/dev-issuer-{}-key.der",
            other.name().to_ascii_lowercase()
        )),
    }
}

#[cfg(feature = "dev")]
fn parse_alg(arg: &str) -> Result<DevAlgorithm, String> {
    arg.parse()
        .map_err(|e: scopegate::dev::issuer::DevIssuerError| e.to_string())
}

#[cfg(feature = "dev")]
fn dev_issuer(
    listen: SocketAddr,
    issuer: &str,
    alg: DevAlgorithm,
    key_file: &std::path::Path,
    allow_non_loopback: bool,
    (client_id, secret_file): (String, Option<PathBuf>),
) -> anyhow::Result<()> {
    use scopegate::dev::introspection::{DEMO_CLIENT_SECRET, IntrospectionClient};
    init_logging(LogFormat::Text);
    let client = match secret_file {
        Some(file) => IntrospectionClient::from_secret_file(&client_id, &file)?,
        None => {
            tracing::warn!(
                client_id,
                "the introspection client uses the built-in demo secret; for demos only"
            );
            IntrospectionClient::new(&client_id, DEMO_CLIENT_SECRET)?
        }
    };
    let dev = scopegate::dev::issuer::DevIssuer::load_or_create_for(key_file, issuer, alg)?
        .with_introspection_client(client);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        dev.serve(
            listener,
            allow_non_loopback,
            scopegate::serve::server::shutdown_signal(),
        )
        .await?;
        Ok(())
    })
}

#[cfg(feature = "dev")]
fn mint_token(
    key_file: &std::path::Path,
    alg: DevAlgorithm,
    issuer: &str,
    mint: &scopegate::dev::issuer::Mint,
    count: u32,
    opaque: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dev = scopegate::dev::issuer::DevIssuer::load_or_create_for(key_file, issuer, alg)?;
    let mint_one = |mint: &scopegate::dev::issuer::Mint| {
        if opaque {
            dev.mint_opaque(mint)
        } else {
            dev.mint(mint)
        }
    };
    if count == 1 {
        println!("{}", mint_one(mint)?);
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut mint = mint.clone();
    for i in 0..count {
        mint.extra
            .insert("jti".into(), serde_json::Value::String(format!("load-{i}")));
        writeln!(out, "{}", mint_one(&mint)?)?;
    }
    Ok(())
}

fn parse_header(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| format!("expected NAME: VALUE, got {arg:?}"))?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

#[cfg(feature = "dev")]
fn parse_claim(arg: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=JSON, got {arg:?}"))?;
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

#[cfg(feature = "dev")]
fn demo_upstream(listen: SocketAddr) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        scopegate::dev::demo::serve(listener, scopegate::serve::server::shutdown_signal()).await?;
        Ok(())
    })
}

#[cfg(feature = "dev")]
fn dev_certs(out: &std::path::Path, hosts: Vec<String>) -> anyhow::Result<()> {
    let hosts = if hosts.is_empty() {
        scopegate::dev::certs::DEFAULT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect()
    } else {
        hosts
    };
    let made = scopegate::dev::certs::generate(out, &hosts)?;
    for path in [
        &made.ca_cert,
        &made.server_cert,
        &made.server_key,
        &made.client_cert,
        &made.client_key,
    ] {
        println!("{}", path.display());
    }
    Ok(())
}

fn health(
    grpc: Option<String>,
    http: Option<String>,
    tls: Option<scopegate::tools::probe::ProbeTls>,
) -> anyhow::Result<()> {
    let timeout = std::time::Duration::from_secs(2);
    runtime()?.block_on(async {
        match (grpc, http) {
            (Some(addr), _) => scopegate::tools::probe::grpc(&addr, timeout, tls.as_ref()).await?,
            (None, Some(url)) => scopegate::tools::probe::http(&url, timeout).await?,
            (None, None) => anyhow::bail!("give --grpc HOST:PORT or --http URL"),
        }
        Ok(())
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in collected log files break searches and parsers.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Fields at the top level of each object (`request_id`, `decision`, …), where log
        // pipelines look for them, rather than under `fields`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

//! The Dockerfile's stages, reproduced without Docker (no engine exists where the tests run).
//!
//! The builder stage's `COPY` instructions are replayed from the build context (git's tracked
//! files minus `.dockerignore`) into a fresh directory, and Cargo must accept the manifest there:
//! a Dockerfile that copies less than the manifest declares (a test or bench file left out) fails
//! here rather than on a user's `docker compose up --build`; a stage built on the builder (the
//! dev binary's) is replayed on top of it. Both images, `runtime` (the default, so the last
//! stage) and `dev`, must take every file from a stage that produces it and run as a numeric
//! non-root user (in `dev`, the dev issuer's, that user owns `/data`). The builder runs on the
//! build platform and cross-compiles for each target platform: its arguments, targets and
//! linkers are checked as text, since no other target can be built here.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::host_triple;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One instruction: its keyword (upper-case) and the rest, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A `FROM` and what follows it up to the next `FROM`.
#[derive(Debug)]
struct Stage {
    name: Option<String>,
    /// The image or stage it starts from.
    base: String,
    /// `FROM`'s `--platform=` value, if any.
    platform: Option<String>,
    instructions: Vec<Instruction>,
}

fn parse_dockerfile(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
        } else if !trimmed.starts_with('#') {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let platform = instruction
                .args
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--platform="))
                .map(str::to_owned);
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                name,
                base: words.first().expect("FROM needs an image").to_string(),
                platform,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push(instruction);
        }
    }
    stages
}

/// The build context: git's tracked files, minus what `.dockerignore` leaves out. Only the
/// pattern forms this repository uses are supported (a path, optionally ending in `/`); any
/// other form fails the test rather than being misread.
fn build_context() -> Vec<String> {
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).expect("read");
    let patterns: Vec<String> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            assert!(
                !l.contains(['*', '?', '[', '!']),
                ".dockerignore pattern {l:?}: extend this test to read it"
            );
            l.trim_end_matches('/').to_string()
        })
        .collect();
    // An external command could hang: bound this test as the fixtures bound theirs.
    crate::common::watchdog::arm();
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output()
        .expect("git ls-files");
    assert!(output.status.success(), "git ls-files failed");
    String::from_utf8(output.stdout)
        .expect("UTF-8 paths")
        .split('\0')
        .filter(|f| !f.is_empty())
        .filter(|f| {
            !patterns
                .iter()
                .any(|p| f == p || f.starts_with(&format!("{p}/")))
        })
        .map(str::to_owned)
        .collect()
}

/// Replays a stage's `COPY` instructions (those from the build context, not `--from`) into
/// `dir`, which stands for the filesystem root, and calls `at_cargo` with the WORKDIR in force
/// before each `RUN` that runs Cargo. Files that `RUN` instructions would create are not
/// emulated: a build whose Cargo steps need such placeholders is what this test exists to stop.
fn replay(stage: &Stage, context: &[String], dir: &Path, mut at_cargo: impl FnMut(&str)) {
    let mut workdir = "/".to_string();
    for instruction in &stage.instructions {
        match instruction.keyword.as_str() {
            "RUN" if instruction.args.contains("cargo ") => at_cargo(&workdir),
            "WORKDIR" => {
                let target = instruction.args.trim();
                workdir = if target.starts_with('/') {
                    target.to_string()
                } else {
                    format!("{}/{target}", workdir.trim_end_matches('/'))
                };
            }
            "COPY" | "ADD" => {
                let words: Vec<&str> = instruction.args.split_whitespace().collect();
                if words.iter().any(|w| w.starts_with("--from")) {
                    continue;
                }
                let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (destination, sources) = words.split_last().expect("COPY needs a destination");
                let destination = if destination.starts_with('/') {
                    destination.to_string()
                } else {
                    format!("{}/{destination}", workdir.trim_end_matches('/'))
                };
                let into_dir = destination.ends_with('/') || sources.len() > 1;
                for source in sources {
                    let source = source.trim_start_matches("./").trim_end_matches('/');
                    let mut matched = false;
                    for file in context {
                        let target = if source.is_empty() || source == "." {
                            Some(format!("{destination}/{file}"))
                        } else if file == source {
                            Some(if into_dir {
                                format!("{destination}/{}", file.rsplit('/').next().unwrap_or(file))
                            } else {
                                destination.clone()
                            })
                        } else {
                            file.strip_prefix(&format!("{source}/"))
                                .map(|rest| format!("{destination}/{rest}"))
                        };
                        if let Some(target) = target {
                            matched = true;
                            let path = dir.join(target.trim_start_matches('/').replace("//", "/"));
                            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                            std::fs::copy(Path::new(ROOT).join(file), &path).expect("copy");
                        }
                    }
                    assert!(matched, "COPY {source}: nothing in the build context");
                }
            }
            _ => {}
        }
    }
}

fn dockerfile() -> Vec<Stage> {
    parse_dockerfile(
        &std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("read Dockerfile"),
    )
}

/// A scratch directory, removed when the test ends.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("scopegate-docker-{name}-"))
        .tempdir()
        .expect("scratch dir")
}

/// Whether Cargo accepts the manifest in `dir` with every target it declares, against the lock
/// file, offline. `cargo metadata` alone does not look for declared test and bench files;
/// `cargo fetch` does (and, offline and for the host only, fetches nothing).
fn cargo_accepts(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = host_triple();
    for args in [
        vec![
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ],
        vec!["fetch", "--target", &host],
    ] {
        // An external command could hang: bound this test as the fixtures bound theirs.
        crate::common::watchdog::arm();
        let output = Command::new(&cargo)
            .args(&args)
            .args(["--locked", "--offline", "--quiet"])
            .current_dir(dir)
            .output()
            .expect("run cargo");
        if !output.status.success() {
            return Err(format!(
                "cargo {}: {}",
                args[0],
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

/// `stage` and the stages it is built on, first to last (`FROM builder AS dev-builder` starts
/// with the builder's files and WORKDIR).
fn lineage<'a>(stages: &'a [Stage], stage: &'a Stage) -> Vec<&'a Stage> {
    let mut chain = vec![stage];
    while let Some(parent) = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(chain[0].base.as_str()))
    {
        assert!(
            chain.len() < stages.len(),
            "stages built on each other in a loop"
        );
        chain.insert(0, parent);
    }
    chain
}

/// At every Cargo step of the builder stage, and of each stage built on it, the files copied so
/// far are enough for Cargo: the manifest parses with every target it declares, against the lock
/// file, without the network.
#[test]
fn the_builder_stage_gets_every_file_cargo_needs() {
    let stages = dockerfile();
    assert!(
        stages.iter().any(|s| s.name.as_deref() == Some("builder")),
        "a stage named builder"
    );
    let context = build_context();
    let mut building = 0;
    for stage in stages.iter().filter(|s| {
        s.instructions
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo "))
    }) {
        building += 1;
        let name = stage.name.clone().unwrap_or_default();
        let scratch = scratch(&name);
        let root = scratch.path();
        let chain = lineage(&stages, stage);
        let mut workdir_before = "/".to_string();
        let mut cargo_steps = 0;
        for (at, step) in chain.iter().enumerate() {
            let last = at + 1 == chain.len();
            let mut inherited = Stage {
                name: step.name.clone(),
                base: step.base.clone(),
                platform: step.platform.clone(),
                instructions: vec![Instruction {
                    keyword: "WORKDIR".into(),
                    args: workdir_before.clone(),
                }],
            };
            inherited
                .instructions
                .extend(step.instructions.iter().map(|i| Instruction {
                    keyword: i.keyword.clone(),
                    args: i.args.clone(),
                }));
            replay(&inherited, &context, root, |workdir| {
                if !last {
                    return;
                }
                cargo_steps += 1;
                let dir = root.join(workdir.trim_start_matches('/'));
                if let Err(why) = cargo_accepts(&dir) {
                    panic!("Cargo step {cargo_steps} of stage {name} (in {workdir}) fails: {why}");
                }
                // The build script compiles proto/.
                assert!(
                    dir.join("proto/envoy/service/auth/v3/external_auth.proto")
                        .is_file(),
                    "Cargo step {cargo_steps} of stage {name}: proto/ is missing"
                );
            });
            if let Some(w) = step.instructions.iter().rfind(|i| i.keyword == "WORKDIR") {
                workdir_before = w.args.clone();
            }
        }
        assert!(cargo_steps > 0, "stage {name} never runs Cargo");
    }
    assert!(
        building >= 2,
        "the production and the dev binary are built: {building} stages"
    );
}

/// Paths a stage's RUN instructions create: `mkdir -p` arguments and the last argument of `cp`.
fn created_by_runs(stage: &Stage) -> BTreeSet<String> {
    let mut created = BTreeSet::new();
    for run in stage.instructions.iter().filter(|i| i.keyword == "RUN") {
        for command in run.args.split("&&").flat_map(|c| c.split(';')) {
            let words: Vec<&str> = command
                .split_whitespace()
                .filter(|w| !w.starts_with("--mount"))
                .collect();
            match words.as_slice() {
                ["mkdir", rest @ ..] => created.extend(
                    rest.iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                ),
                ["cp", .., last] => {
                    created.insert(last.to_string());
                }
                _ => {}
            }
        }
    }
    created
}

/// Both images, `runtime` and `dev`, take each file from a stage that produces it and run as a
/// numeric non-root user (so Kubernetes' runAsNonRoot can check it); in `dev`, that user owns
/// `/data`, where the dev issuer keeps its key.
#[test]
fn the_images_are_complete_and_run_as_a_numeric_non_root_user() {
    let stages = dockerfile();
    for name in ["runtime", "dev"] {
        let image = stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("a stage named {name}"));
        let user = image_is_complete(&stages, image);
        if name == "dev" {
            let data = image
                .instructions
                .iter()
                .find(|i| i.keyword == "COPY" && i.args.ends_with(" /data"))
                .expect("a COPY that creates /data");
            assert!(
                data.args.contains(&format!("--chown={user}")),
                "/data must be owned by the image's user {user}: COPY {}",
                data.args
            );
        }
    }
}

/// Checks that `runtime` copies only files its source stages create and runs as a numeric
/// non-root user; returns that `uid:gid`.
fn image_is_complete(stages: &[Stage], runtime: &Stage) -> String {
    for copy in runtime.instructions.iter().filter(|i| i.keyword == "COPY") {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        let from = words
            .iter()
            .find_map(|w| w.strip_prefix("--from="))
            .unwrap_or_else(|| panic!("runtime COPY from the build context: {}", copy.args));
        let stage = stages
            .iter()
            .find(|s| s.name.as_deref() == Some(from))
            .unwrap_or_else(|| panic!("COPY --from={from}: no such stage"));
        let sources: Vec<&str> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .copied()
            .collect();
        let (_, sources) = sources.split_last().expect("COPY needs a destination");
        let created = created_by_runs(stage);
        for source in sources {
            assert!(
                created.contains(*source),
                "COPY --from={from} {source}: stage {from} never creates it (it creates {created:?})"
            );
        }
    }

    let user = runtime
        .instructions
        .iter()
        .rfind(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("a USER instruction");
    let ids: Vec<&str> = user.split(':').collect();
    assert!(
        ids.iter()
            .all(|id| id.parse::<u32>().is_ok_and(|id| id != 0)),
        "USER {user} must be a numeric, non-root uid:gid"
    );
    user
}

/// The stages a stage's `COPY --from` take files from, and theirs, with the stage itself.
fn sources_of<'a>(stages: &'a [Stage], stage: &'a Stage) -> Vec<&'a Stage> {
    let mut found: Vec<&Stage> = Vec::new();
    let mut todo = vec![stage];
    while let Some(next) = todo.pop() {
        for s in lineage(stages, next) {
            if found.iter().any(|f| std::ptr::eq(*f, s)) {
                continue;
            }
            found.push(s);
            for copy in s.instructions.iter().filter(|i| i.keyword == "COPY") {
                if let Some(from) = copy
                    .args
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("--from="))
                    && let Some(source) = stages.iter().find(|t| t.name.as_deref() == Some(from))
                {
                    todo.push(source);
                }
            }
        }
    }
    found
}

/// The `cargo build` commands among `stages`.
fn cargo_builds<'a>(stages: &[&'a Stage]) -> Vec<&'a str> {
    stages
        .iter()
        .flat_map(|s| s.instructions.iter())
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| i.args.split("&&"))
        .filter(|c| c.contains("cargo build"))
        .collect()
}

/// The default image (the last stage, `runtime`) is the production build: its binary is built
/// `--no-default-features`, so it has none of the development tools; the `dev` image's binary is
/// built with them. Both come from one `docker buildx build --platform linux/amd64,linux/arm64`:
/// the builder runs on `$BUILDPLATFORM` and cross-compiles for `$TARGETARCH` (rustup's standard
/// library for the target, Debian's cross GCC for aarch64 and, from an arm64 builder, x86_64),
/// and the images start from a multi-platform base, never pinned to one platform.
#[test]
fn both_targets_cross_compile_for_both_platforms() {
    let stages = dockerfile();
    let runtime = stages.last().expect("stages");
    assert_eq!(
        runtime.name.as_deref(),
        Some("runtime"),
        "the default target is the last stage"
    );
    let dev = stages
        .iter()
        .find(|s| s.name.as_deref() == Some("dev"))
        .expect("a dev stage");
    for image in [runtime, dev] {
        assert_eq!(
            image.platform, None,
            "{:?} is for the target platform",
            image.name
        );
    }

    let production = cargo_builds(&sources_of(&stages, runtime));
    assert_eq!(
        production.len(),
        1,
        "one build for the default image: {production:?}"
    );
    assert!(
        production[0].contains("--no-default-features"),
        "the default image is the production build: {}",
        production[0]
    );
    let dev_builds = sources_of(&stages, dev);
    let dev_binary = dev
        .instructions
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.ends_with(" /usr/local/bin/scopegate"))
        .expect("the dev image's binary");
    let from = dev_binary
        .args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--from="))
        .expect("COPY --from");
    let dev_stage = dev_builds
        .iter()
        .find(|s| s.name.as_deref() == Some(from))
        .expect("the stage the dev binary comes from");
    let own: Vec<&str> = cargo_builds(&[dev_stage]);
    assert_eq!(own.len(), 1, "one build in {from}: {own:?}");
    assert!(
        !own[0].contains("--no-default-features") && !own[0].contains("--features"),
        "the dev image has the default features, dev among them: {}",
        own[0]
    );

    let builder = stages
        .iter()
        .find(|s| s.name.as_deref() == Some("builder"))
        .expect("a builder stage");
    assert_eq!(
        builder.platform.as_deref(),
        Some("$BUILDPLATFORM"),
        "the builder is native"
    );
    let has = |keyword: &str, text: &str| {
        builder
            .instructions
            .iter()
            .any(|i| i.keyword == keyword && i.args.contains(text))
    };
    for arg in ["TARGETPLATFORM", "TARGETARCH", "BUILDARCH"] {
        assert!(has("ARG", arg), "the builder declares ARG {arg}");
    }
    for (arch, triple) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
    ] {
        assert!(
            has("RUN", &format!("{arch}) echo {triple} > /rust-target")),
            "TARGETARCH {arch} builds {triple}"
        );
    }
    assert!(has("RUN", "rustup target add \"$(cat /rust-target)\""));
    assert!(has("RUN", "gcc-aarch64-linux-gnu") && has("RUN", "gcc-x86-64-linux-gnu"));
    for (triple, gnu) in [
        ("x86_64_unknown_linux_gnu", "x86_64-linux-gnu"),
        ("aarch64_unknown_linux_gnu", "aarch64-linux-gnu"),
    ] {
        for variable in [
            format!("CC_{triple}={gnu}-gcc"),
            format!("CXX_{triple}={gnu}-g++"),
            format!("AR_{triple}={gnu}-ar"),
            format!(
                "CARGO_TARGET_{}_LINKER={gnu}-gcc",
                triple.to_ascii_uppercase()
            ),
        ] {
            assert!(has("ENV", &variable), "the builder sets {variable}");
        }
    }
    for build in cargo_builds(&sources_of(&stages, dev))
        .into_iter()
        .chain(production)
    {
        assert!(
            build.contains("--target \"$(cat /rust-target)\""),
            "every build is for the target platform: {build}"
        );
    }
    // The binaries are copied out of the target's own folder.
    assert!(has(
        "RUN",
        "cp \"target/$(cat /rust-target)/release/scopegate\" /out/scopegate"
    ));
}

#[test]
fn the_parser_reads_continuations_stages_and_copies() {
    let stages = parse_dockerfile(
        "# comment\nFROM --platform=$BUILDPLATFORM a AS one\nWORKDIR /w\nRUN x \\\n    && mkdir -p /o \\\n    && cp f /o/f\n\
         COPY a b ./\nFROM b\nCOPY --from=one /o/f /f\nUSER 1:2\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("one"));
    assert_eq!(stages[0].base, "a");
    assert_eq!(stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(stages[1].platform, None);
    assert_eq!(stages[0].instructions.len(), 3);
    assert_eq!(
        created_by_runs(&stages[0]),
        ["/o", "/o/f"].map(String::from).into_iter().collect()
    );
    assert_eq!(stages[1].instructions[1].args, "1:2");
}

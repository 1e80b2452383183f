//! The Dockerfile's stages, reproduced without Docker (no engine exists where the tests run).
//!
//! The builder stage's `COPY` instructions are replayed from the build context (git's tracked
//! files minus `.dockerignore`) into a fresh directory, and Cargo must accept the manifest there:
//! a Dockerfile that copies less than the manifest declares (a test or bench file left out) fails
//! here rather than on a user's `docker compose up --build`. The runtime stage must take every
//! file from a stage that produces it, and run as a numeric non-root user that owns `/data`.

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
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                name,
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

/// At every Cargo step of the builder stage, the files copied so far are enough for Cargo: the
/// manifest parses with every target it declares, against the lock file, without the network.
#[test]
fn the_builder_stage_gets_every_file_cargo_needs() {
    let stages = dockerfile();
    let builder = stages
        .iter()
        .find(|s| s.name.as_deref() == Some("builder"))
        .expect("a stage named builder");
    let scratch = scratch("builder");
    let root = scratch.path();
    let mut cargo_steps = 0;
    replay(builder, &build_context(), root, |workdir| {
        cargo_steps += 1;
        let dir = root.join(workdir.trim_start_matches('/'));
        if let Err(why) = cargo_accepts(&dir) {
            panic!("Cargo step {cargo_steps} of the builder stage (in {workdir}) fails: {why}");
        }
        // The build script compiles proto/.
        assert!(
            dir.join("proto/envoy/service/auth/v3/external_auth.proto")
                .is_file(),
            "Cargo step {cargo_steps}: proto/ is missing"
        );
    });
    assert!(cargo_steps > 0, "the builder stage never runs Cargo");
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

/// The runtime stage takes each file from a stage that produces it, runs as a numeric non-root
/// user (so Kubernetes' runAsNonRoot can check it), and that user owns `/data`.
#[test]
fn the_runtime_stage_is_complete_and_runs_as_a_numeric_non_root_user() {
    let stages = dockerfile();
    let runtime = stages.last().expect("a runtime stage");
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
    let data = runtime
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

#[test]
fn the_parser_reads_continuations_stages_and_copies() {
    let stages = parse_dockerfile(
        "# comment\nFROM a AS one\nWORKDIR /w\nRUN x \\\n    && mkdir -p /o \\\n    && cp f /o/f\n\
         COPY a b ./\nFROM b\nCOPY --from=one /o/f /f\nUSER 1:2\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("one"));
    assert_eq!(stages[0].instructions.len(), 3);
    assert_eq!(
        created_by_runs(&stages[0]),
        ["/o", "/o/f"].map(String::from).into_iter().collect()
    );
    assert_eq!(stages[1].instructions[1].args, "1:2");
}

//! The `timeline` command as a new user meets it: help with examples that
//! work, completions, a hint when `eval` waits on a terminal, quiet broken
//! pipes, `plan --tree`, `serve --listen` with a host name, errors printed
//! once. Each test runs the real binary.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_timeline");

/// The project's root, where the help's examples are meant to be run.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn timeline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(root()).output().unwrap()
}

fn stdout(args: &[&str]) -> String {
    let out = timeline(args);
    assert!(
        out.status.success(),
        "timeline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The command lines of the help's "Examples:" section.
fn examples(help: &str) -> Vec<String> {
    let (_, section) = help.split_once("\nExamples:\n").expect("an Examples: section");
    section
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn main_help_says_what_the_tool_does_then_commands_then_examples() {
    let help = stdout(&["--help"]);
    let first = help.lines().next().unwrap();
    assert!(first.starts_with("Time-state analytics"), "{first}");
    assert!(!help.contains("embedded local runtime of Golem Timeline"), "{help}");
    let commands = help.find("Commands:").expect("commands");
    let examples_at = help.find("Examples:").expect("examples");
    assert!(commands < examples_at, "{help}");
    for command in ["eval", "plan", "serve", "gen", "completions"] {
        assert!(
            help[commands..examples_at].contains(&format!("  {command} ")),
            "{command}: {help}"
        );
    }
    let commands = examples(&help)
        .into_iter()
        .filter(|e| e.starts_with("timeline "))
        .count();
    assert!(commands >= 3, "{help}");
}

#[test]
fn every_subcommand_help_ends_with_examples() {
    for command in [
        &["eval"][..],
        &["plan"],
        &["serve"],
        &["gen"],
        &["gen", "cirr"],
        &["completions"],
    ] {
        let help = stdout(&[command, &["--help"]].concat());
        let found = examples(&help);
        assert!((2..=4).contains(&found.len()), "{command:?}: {found:?}");
        // Nothing but examples after the heading.
        let tail = help.split_once("\nExamples:\n").unwrap().1;
        assert!(
            tail.lines().all(|l| l.trim().is_empty() || l.starts_with("  ")),
            "{command:?}: {tail}"
        );
    }
}

/// Each example of `eval --help` and `plan --help`, run as printed by a shell
/// (with this build's `timeline` first on the PATH) from the project's root,
/// succeeds and prints something.
#[test]
fn eval_and_plan_examples_work_as_printed() {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for command in ["eval", "plan"] {
        let help = stdout(&[command, "--help"]);
        let found = examples(&help);
        assert!(found.len() >= 3, "{command}: {found:?}");
        for example in found {
            let out = Command::new("bash")
                .args(["-c", &format!("set -o pipefail; {example}")])
                .env("PATH", &path)
                .current_dir(root())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{example}: {stderr}");
            assert!(!out.stdout.is_empty(), "{example}: no output; {stderr}");
            assert!(!stderr.contains("warning"), "{example}: {stderr}");
        }
    }
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        assert!(script.len() > 500, "{shell}: {script}");
        for command in ["eval", "plan", "serve", "gen", "completions"] {
            assert!(script.contains(command), "{shell} script does not name {command}");
        }
        // Options too, e.g. eval's --format and its values.
        assert!(script.contains("format") && script.contains("table"), "{shell}");
    }
    let out = timeline(&["completions", "tcsh"]);
    assert!(!out.status.success());
}

/// Runs `args` with standard input on a fresh pseudo-terminal; returns the
/// first line of stderr (within 10 s), then ends the input with Ctrl-D and
/// returns the exit status and the rest of stderr.
fn on_a_terminal(args: &[&str]) -> (String, std::process::ExitStatus, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given integers.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (send, receive) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        send.send(first).unwrap();
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    });
    let first = receive.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("nothing on stderr within 10 s: eval waits silently");
    });
    // Ctrl-D at the start of a line: end of input.
    let mut master = std::fs::File::from(master);
    master.write_all(&[4]).unwrap();
    let status = child.wait().unwrap();
    (first, status, reader.join().unwrap())
}

#[test]
fn eval_on_a_terminal_says_it_reads_standard_input() {
    let (first, status, rest) = on_a_terminal(&["eval", "-q", "@examples/cirr.tl"]);
    assert!(first.contains("standard input"), "{first}");
    assert!(first.contains("Ctrl-D"), "{first}");
    assert!(first.contains("--events"), "{first}");
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.is_empty(), "{rest}");

    // From a pipe, nothing is said.
    let events = std::fs::read(root().join("examples/cirr.jsonl")).unwrap();
    let out = support::output_with_stdin(
        Command::new(BIN)
            .args(["eval", "-q", "@examples/cirr.tl"])
            .current_dir(root()),
        &events,
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(!out.stdout.is_empty());
}

/// Runs `args`, reads one line of its output, closes the pipe; returns the
/// exit status and stderr.
fn read_one_line_then_close(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "{args:?}: no output");
    drop(out);
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (child.wait().unwrap(), stderr)
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let events = events.to_str().unwrap();
    // 4,000 sessions: far more output than a pipe holds.
    stdout(&["gen", "cirr", "--sessions", "4000", "-o", events]);
    // A plan of 400 nodes: its JSON and its tree are larger than a pipe too.
    let big_query = (0..200)
        .map(|i| format!("has_existed(n == {i})"))
        .collect::<Vec<_>>()
        .join(" || ");
    let plan = stdout(&["plan", "-q", &big_query]);
    assert!(plan.len() > 1 << 17, "{}", plan.len());
    for args in [
        &["eval", "-q", "@examples/cirr.tl", "-e", events][..],
        &["eval", "-q", "@examples/cirr.tl", "-e", events, "--format", "csv"],
        &["eval", "-q", "@examples/cirr.tl", "-e", events, "--timeline"],
        &["plan", "-q", &big_query],
        &["plan", "-q", &big_query, "--tree"],
        &["gen", "cirr", "--sessions", "100000"],
        &["completions", "bash"],
    ] {
        let (status, stderr) = read_one_line_then_close(args);
        assert!(status.success(), "{args:?}: {status}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn plan_tree_shows_every_node_with_its_expression_worker_and_sharing() {
    let plan: serde_json::Value = serde_json::from_str(&stdout(&["plan", "-q", "@examples/cirr.tl"])).unwrap();
    let tree = stdout(&["plan", "-q", "@examples/cirr.tl", "--tree"]);
    let nodes = plan["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 11);
    for node in nodes {
        let id = node["id"].as_str().unwrap();
        let worker = node["worker"].as_str().unwrap();
        let line = tree
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not in\n{tree}"));
        assert!(line.ends_with(&format!("{id}  {worker}")), "{line}");
    }
    // Each node's expression in full, on the line below it: the root's is the
    // whole query.
    let lines: Vec<&str> = tree.lines().collect();
    let root = plan["result"].as_str().unwrap();
    let at = lines.iter().position(|l| l.contains(root)).unwrap();
    let expression = lines[at + 1];
    for part in [
        "duration_where(",
        r#"has_existed(playerStateChange == "play")"#,
        r#"!has_existed_within(userAction == "seek", 5000ms)"#,
        r#"latest_event_to_state(playerStateChange) == "buffer""#,
        r#"latest_event_to_state(cdnChange) == "CDN1""#,
    ] {
        assert!(expression.contains(part), "{part} not in {expression}");
    }
    // Children are drawn under their parent.
    assert!(tree.contains("├── ") && tree.contains("└── "), "{tree}");
    assert!(tree.contains("0 shared within the query"), "{tree}");

    // A binding read twice is one node, drawn once and marked shared.
    let tree = stdout(&["plan", "-q", "@examples/card-swipes.tl", "--tree"]);
    let shared: Vec<&str> = tree.lines().filter(|l| l.contains("(shared")).collect();
    assert_eq!(shared.len(), 2, "{tree}");
    assert!(shared[0].contains("shared: read 2 times in this query"), "{tree}");
    assert!(shared[1].contains("shared: drawn above"), "{tree}");
    let id = shared[0].split_whitespace().find(|w| w.starts_with("and-")).unwrap();
    assert!(shared[1].contains(id), "{tree}");
}

#[test]
fn a_dsl_error_is_printed_once() {
    let out = timeline(&[
        "eval",
        "-q",
        "duration_where(has_existed(a == 1)",
        "-e",
        "examples/cirr.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("unclosed `(`").count(), 1, "{stderr}");
    assert!(!stderr.contains("error: invalid query"), "{stderr}");
    assert!(stderr.contains("this `(` is never closed"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = timeline(&["plan", "-q", "has_existed(a = 1)"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("unexpected `=`").count(), 1, "{stderr}");

    // Other errors keep their one `error:` line.
    let out = timeline(&["eval", "-q", "@examples/cirr.tl", "-e", "no-such-file.jsonl"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot open events file no-such-file.jsonl"),
        "{stderr}"
    );
}

#[test]
fn serve_listens_on_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "localhost:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let _guard = Kill(child);
    let base = loop {
        let line = lines.next().expect("the server exited before listening").unwrap();
        if let Some(at) = line.find("serving on http://") {
            break line[at + "serving on ".len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    // localhost is resolved, IPv4 first.
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let health: serde_json::Value = ureq::get(&format!("{base}/v1/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health["status"], "ok");

    for (listen, expected) in [
        (
            "no-such-host.invalid:8080",
            "cannot resolve `no-such-host.invalid:8080`",
        ),
        ("localhost", "is not HOST:PORT"),
    ] {
        let out = timeline(&["serve", "--listen", listen, "--data-dir", dir.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains(expected), "{listen}: {stderr}");
    }
}

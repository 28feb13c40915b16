//! Runs the README's quickstart commands as written, so the README cannot drift from the code:
//! the "by hand" block of the Quickstart section, line by line, against a broker on free ports in
//! a temporary data dir (the commands read `STRATA_LISTEN`, `STRATA_BROKER`, `STRATA_DATA_DIR`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The commands of the second `sh` block under "## Quickstart", comments stripped.
fn quickstart_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .expect("README has a Quickstart section")
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split("```sh")
        .nth(2)
        .expect("a second sh block: the steps by hand");
    let block = block.split("```").next().unwrap();
    block
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_quickstart_commands_work_as_written() {
    let commands = quickstart_commands();
    assert!(commands.len() >= 5, "quickstart steps: {commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_base_port(3);
    let listen = format!("127.0.0.1:{port}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_strata"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("PATH", path.as_str()),
        ("STRATA_LISTEN", listen.as_str()),
        ("STRATA_BROKER", listen.as_str()),
        ("STRATA_DATA_DIR", dir.path().to_str().unwrap()),
    ];
    let mut broker = None;
    let mut outputs = Vec::new();
    for cmd in &commands {
        if cmd.starts_with("cargo build") {
            continue; // the test harness built the binary already
        }
        if cmd == "strata broker" {
            let mut child = Command::new("bash")
                .args(["-c", "exec strata broker"])
                .envs(env)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains(common::READY_LINE) {
                        let _ = tx.send(());
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(60))
                .expect("README's broker starts");
            broker = Some(child);
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", cmd])
            .envs(env)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "README command failed: {cmd}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((cmd.clone(), stdout));
    }
    let mut broker = broker.expect("the README starts a broker");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(broker.id() as i32, libc::SIGTERM) };
    assert!(broker.wait().unwrap().success(), "the broker stops cleanly");

    let consumed = outputs
        .iter()
        .find(|(c, _)| c.starts_with("strata consume"))
        .map(|(_, o)| o.clone())
        .expect("the README consumes");
    for kv in ["alice=apple", "bob=banana", "alice=cherry"] {
        assert!(
            consumed.contains(kv),
            "consume printed {consumed:?}, missing {kv}"
        );
    }
    let described = outputs
        .iter()
        .find(|(c, _)| c.starts_with("strata topic describe"))
        .map(|(_, o)| o.clone())
        .expect("the README describes the topic");
    assert!(described.contains("orders"), "{described}");
    let group_read = outputs
        .iter()
        .find(|(c, _)| c.starts_with("strata consume orders --group"))
        .map(|(_, o)| o.clone())
        .expect("the README consumes as a group member");
    for value in ["apple", "banana", "cherry"] {
        assert!(group_read.contains(value), "{group_read}");
    }
    let group = outputs
        .iter()
        .find(|(c, _)| c.starts_with("strata group describe"))
        .map(|(_, o)| o.clone())
        .expect("the README describes the group");
    assert!(group.contains("\"readers\": Empty"), "{group}");
}

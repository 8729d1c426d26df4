//! Helpers shared by the integration tests: the `omen` binary, free loopback ports, a
//! minimal HTTP client, bounded waiting, and processes killed when a test ends.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for anything before failing.
pub const LIMIT: Duration = Duration::from_secs(30);

pub fn omen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omen"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `omen agent test --rules R --input F` and returns its stdout.
pub fn agent_oneshot(rules: &Path, input: &Path) -> String {
    let output = omen()
        .args(["agent", "test", "--rules"])
        .arg(rules)
        .arg("--input")
        .arg(input)
        .output()
        .expect("run omen");
    assert!(
        output.status.success(),
        "omen agent test failed: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout).expect("utf-8 exposition")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether a real component (`promtool`, `prometheus`…) is installed. Under CI (where
/// `.ci/setup` installs them) a missing one fails the test; elsewhere the test skips.
pub fn component_available(program: &str, package: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is missing in CI: .ci/setup should have installed Debian's {package}"
        );
        eprintln!("skipping: {program} not installed (apt-get install {package})");
    }
    found
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` over HTTP/1.0; returns (status, body), or None if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_accepting(addr, path, "*/*")
}

/// `GET path` with an `Accept` header (e.g. OpenMetrics, as Prometheus asks for it).
pub fn http_get_accepting(addr: SocketAddr, path: &str, accept: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// Polls `check` until it returns Some, or panics after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples of an exposition, `name{labels}` → value, without the agent's self-metrics.
pub fn rule_samples(exposition: &str) -> BTreeMap<String, f64> {
    omen_agent::oneshot::parse_exposition(exposition)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("omen_agent_"))
        .collect()
}

/// A child process killed (SIGKILL) and reaped when dropped, so no test leaves one behind.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        Self(Some(child))
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by number (SIGTERM = 15, SIGHUP = 1) with the `kill` command.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.0 {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = &mut self.0 {
                if let Ok(Some(status)) = child.try_wait() {
                    self.0 = None;
                    return Some(status);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `omen agent` started on 127.0.0.1, ready, killed when dropped.
pub struct LiveAgent {
    pub process: ChildGuard,
    pub addr: SocketAddr,
}

impl LiveAgent {
    pub fn start(rules: &Path, tail: &str, checkpoint: Option<&Path>, port: u16) -> Self {
        Self::start_with(rules, tail, checkpoint, port, &[])
    }

    pub fn start_with(
        rules: &Path,
        tail: &str,
        checkpoint: Option<&Path>,
        port: u16,
        extra: &[&str],
    ) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = omen();
        command
            .args(["agent", "--rules"])
            .arg(rules)
            .args(["--tail", tail, "--listen", &addr.to_string()])
            .args(extra);
        if let Some(path) = checkpoint {
            command
                .arg("--checkpoint")
                .arg(path)
                .args(["--checkpoint-interval", "100ms"]);
        }
        let process = ChildGuard::spawn(&mut command);
        wait_for(LIMIT, "the agent to be ready", || {
            http_get(addr, "/ready").filter(|(status, _)| *status == 200)
        });
        Self { process, addr }
    }

    pub fn samples(&self) -> BTreeMap<String, f64> {
        http_get(self.addr, "/metrics")
            .map(|(_, body)| omen_agent::oneshot::parse_exposition(&body))
            .unwrap_or_default()
    }

    pub fn wait_value(&self, key: &str, want: f64) {
        wait_for(LIMIT, &format!("{key} == {want}"), || {
            (self.samples().get(key) == Some(&want)).then_some(())
        });
    }
}

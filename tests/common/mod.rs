//! Helpers shared by the integration tests: the `omen` binary, free loopback ports, a
//! minimal HTTP client, bounded waiting, processes killed when a test ends, and the real
//! components (Prometheus, Alertmanager) with a webhook receiver behind them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
    let head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    http_exchange(addr, head.as_bytes(), &[])
}

/// `POST path` with `headers` and `body` over HTTP/1.0; returns (status, body), or None if
/// nothing answers.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut head = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    http_exchange(addr, head.as_bytes(), body)
}

fn http_exchange(addr: SocketAddr, head: &[u8], body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(head).ok()?;
    // A server may answer (413) and stop reading before a large body is sent: its answer
    // is still read.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// Polls `check` until it returns Some, or panics after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for_or(limit, what, check, String::new)
}

/// [`wait_for`], and on timeout the panic says what `context` tells (logs, counts).
pub fn wait_for_or<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples of an exposition, `name{labels}` → value, without the agent's self-metrics
/// (its own families, the build and the process).
pub fn rule_samples(exposition: &str) -> BTreeMap<String, f64> {
    omen_agent::oneshot::parse_exposition(exposition)
        .into_iter()
        .filter(|(k, _)| {
            !["omen_agent_", "omen_build_info", "process_"]
                .iter()
                .any(|prefix| k.starts_with(prefix))
        })
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

    /// Spawns with stdout and stderr appended to `log`, for a long-lived process that
    /// writes more than a pipe holds (and for reading what it said when a test fails).
    pub fn spawn_logged(command: &mut Command, log: &Path) -> Self {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open process log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
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
    /// `omen agent --config F` listening on `addr` (which the config must name), with what
    /// it logs appended to `log`.
    pub fn start_config(config: &Path, addr: SocketAddr, log: &Path) -> Self {
        let process = ChildGuard::spawn_logged(
            omen()
                .args(["agent", "--config"])
                .arg(config)
                .env("OMEN_LOG", "info"),
            log,
        );
        let start = Instant::now();
        while http_get(addr, "/ready").is_none_or(|(status, _)| status != 200) {
            assert!(
                start.elapsed() < LIMIT,
                "the agent was not ready after {LIMIT:?}; it said:\n{}",
                log_tail(log, 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { process, addr }
    }

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
        wait_for_or(
            LIMIT,
            &format!("{key} == {want}"),
            || (self.samples().get(key) == Some(&want)).then_some(()),
            || format!("it is {:?}", self.samples().get(key)),
        );
    }
}

/// The last `lines` lines of a process log, for failure messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus (Debian's `prometheus`) on 127.0.0.1 with its storage in `dir`,
/// ready, killed when dropped.
pub struct Prometheus {
    pub process: ChildGuard,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Prometheus {
    pub fn start(dir: &Path, config_yaml: &str) -> Self {
        Self::start_with(dir, config_yaml, &[])
    }

    /// With further command-line flags (e.g. `--web.enable-remote-write-receiver`).
    pub fn start_with(dir: &Path, config_yaml: &str, flags: &[&str]) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("prometheus config");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = dir.join("prometheus.log");
        let process = ChildGuard::spawn_logged(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .args(flags),
            &log,
        );
        wait_for(LIMIT, "Prometheus to be ready", || {
            http_get(addr, "/-/ready").filter(|(status, _)| *status == 200)
        });
        Self { process, addr, log }
    }

    /// The result of an instant query (None while Prometheus has no answer).
    ///
    /// # Panics
    /// When Prometheus rejects the query: the test's expression is wrong.
    pub fn query(&self, expr: &str) -> Option<Vec<serde_json::Value>> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )?;
        assert_eq!(status, 200, "query `{expr}` failed: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"].as_array().cloned()
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on `addr`, clustering off,
/// its state in `storage`, ready, killed when dropped. Restarting on the same address and
/// storage is how a test brings one back.
pub struct Alertmanager {
    pub process: ChildGuard,
    pub addr: SocketAddr,
}

impl Alertmanager {
    pub fn start(config: &Path, storage: &Path, addr: SocketAddr, log: &Path) -> Self {
        let process = ChildGuard::spawn_logged(
            Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", storage.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--cluster.listen-address="),
            log,
        );
        wait_for(LIMIT, "Alertmanager to be ready", || {
            http_get(addr, "/-/ready").filter(|(status, _)| *status == 200)
        });
        Self { process, addr }
    }
}

/// The repository's Alertmanager configuration (`alertmanager/alertmanager.yml`) with its
/// webhook pointed at `webhook` and its waits shortened to test time: the routing,
/// grouping and inhibition under test are the shipped ones.
pub fn alertmanager_config(webhook: SocketAddr) -> String {
    let text = std::fs::read_to_string(repo_root().join("alertmanager/alertmanager.yml"))
        .expect("alertmanager/alertmanager.yml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("alertmanager YAML");
    fn shorten(route: &mut serde_yaml::Value) {
        for (key, value) in [
            ("group_wait", "1s"),
            ("group_interval", "2s"),
            ("repeat_interval", "1h"),
        ] {
            if route.get(key).is_some() {
                route[key] = value.into();
            }
        }
        if let Some(routes) = route.get_mut("routes").and_then(|r| r.as_sequence_mut()) {
            routes.iter_mut().for_each(shorten);
        }
    }
    shorten(&mut config["route"]);
    let url = format!("http://{webhook}/alerts");
    for receiver in config["receivers"].as_sequence_mut().expect("receivers") {
        for hook in receiver
            .get_mut("webhook_configs")
            .and_then(|w| w.as_sequence_mut())
            .into_iter()
            .flatten()
        {
            hook["url"] = url.clone().into();
        }
    }
    serde_yaml::to_string(&config).expect("alertmanager YAML")
}

/// An HTTP endpoint on 127.0.0.1 that keeps every JSON body POSTed to it (Alertmanager's
/// webhook notifications) and answers 200; stopped when dropped.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let addr = listener.local_addr().expect("webhook address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Some(body) = stream.ok().and_then(read_post_body) {
                        if let Ok(json) = serde_json::from_slice(&body) {
                            received.lock().expect("webhook lock").push(json);
                        }
                    }
                }
            })
        };
        Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Every notification received so far.
    pub fn notifications(&self) -> Vec<serde_json::Value> {
        self.received.lock().expect("webhook lock").clone()
    }

    /// Every alert of every notification so far, in arrival order.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.notifications()
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Reads one HTTP request's body (by Content-Length) and answers 200 with no body.
fn read_post_body(mut stream: TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(body)
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An `omen detect --config F` on 127.0.0.1, ready, killed when dropped; what it logs goes
/// to `log`.
pub struct LiveDetector {
    pub process: ChildGuard,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl LiveDetector {
    /// Writes `config_yaml` (which must listen on `addr`) beside `log` and starts it.
    pub fn start(config_yaml: &str, addr: SocketAddr, log: &Path) -> Self {
        let config = log.with_extension("yaml");
        std::fs::write(&config, config_yaml).expect("detector config");
        let process = ChildGuard::spawn_logged(
            omen()
                .args(["detect", "--config"])
                .arg(&config)
                .env("OMEN_LOG", "info"),
            log,
        );
        wait_for(LIMIT, "the detector to be ready", || {
            http_get(addr, "/ready").filter(|(status, _)| *status == 200)
        });
        Self {
            process,
            addr,
            log: log.to_owned(),
        }
    }

    /// The detector's samples, `name{labels}` → value.
    pub fn samples(&self) -> BTreeMap<String, f64> {
        http_get(self.addr, "/metrics")
            .map(|(_, body)| omen_agent::oneshot::parse_exposition(&body))
            .unwrap_or_default()
    }

    /// `/api/v1/incidents`: open and recently resolved incidents.
    pub fn incidents(&self) -> serde_json::Value {
        http_get(self.addr, "/api/v1/incidents")
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    }
}

/// A real Kafka-protocol broker (`tansu`, from crates.io; `.ci/setup` installs it) on
/// 127.0.0.1, in memory, killed when dropped.
pub struct Broker {
    pub process: ChildGuard,
    pub addr: SocketAddr,
}

impl Broker {
    pub fn start(log: &Path) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let url = format!("tcp://{addr}");
        let process = ChildGuard::spawn_logged(
            Command::new("tansu")
                .arg("broker")
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"]),
            log,
        );
        wait_for(LIMIT, "the broker to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
        Self { process, addr }
    }

    /// `tansu topic create NAME --partitions N`.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let output = Command::new("tansu")
            .args(["topic", "create", name])
            .args(["--broker", &format!("tcp://{}", self.addr)])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .expect("run tansu topic create");
        assert!(
            output.status.success(),
            "tansu topic create {name} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing answers, as when it
    /// is unreachable; `resume` thaws it with everything it held.
    pub fn pause(&self) {
        self.process.signal(19);
    }

    pub fn resume(&self) {
        self.process.signal(18);
    }
}

/// A producer to `broker` that waits for every record to be acknowledged.
pub struct Producer(rdkafka::producer::BaseProducer);

impl Producer {
    pub fn new(broker: SocketAddr) -> Self {
        Self::with(broker, &[])
    }

    /// A producer that writes every record in a batch of its own. tansu 0.6 answers a
    /// fetch from an offset inside a batch with the batches after it, and ListOffsets with
    /// the last batch's base offset: with one record per batch, offsets and batches agree.
    pub fn one_record_per_batch(broker: SocketAddr) -> Self {
        Self::with(broker, &[("batch.num.messages", "1"), ("linger.ms", "0")])
    }

    fn with(broker: SocketAddr, properties: &[(&str, &str)]) -> Self {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", broker.to_string())
            .set("acks", "all")
            .set("linger.ms", "5");
        for (key, value) in properties {
            config.set(*key, *value);
        }
        Self(config.create().expect("kafka producer"))
    }

    /// Sends `(key, value)` records to `topic` and waits until all are acknowledged.
    pub fn send_all<K: AsRef<str>, V: AsRef<str>>(&self, topic: &str, records: &[(K, V)]) {
        use rdkafka::producer::{BaseRecord, Producer as _};
        for (key, value) in records {
            let mut record = BaseRecord::to(topic)
                .key(key.as_ref())
                .payload(value.as_ref());
            loop {
                match self.0.send(record) {
                    Ok(()) => break,
                    Err((error, back)) => {
                        assert!(
                            matches!(
                                error,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "produce failed: {error}"
                        );
                        record = back;
                        self.0.poll(Duration::from_millis(10));
                    }
                }
            }
            self.0.poll(Duration::ZERO);
        }
        self.0
            .flush(Duration::from_secs(30))
            .expect("every record acknowledged");
    }

    /// Sends a tombstone (a key without a value) for each key and waits for them.
    pub fn send_tombstones<'a>(&self, topic: &str, keys: impl IntoIterator<Item = &'a str>) {
        use rdkafka::producer::{BaseRecord, Producer as _};
        for key in keys {
            self.0
                .send(BaseRecord::<str, str>::to(topic).key(key))
                .map_err(|(error, _)| error)
                .expect("produce a tombstone");
            self.0.poll(Duration::ZERO);
        }
        self.0
            .flush(Duration::from_secs(30))
            .expect("every tombstone acknowledged");
    }
}

/// A real Redis (Debian's `redis-server`) on 127.0.0.1 with its dump in `dir`, killed
/// when dropped. `restart` shuts it down saving its data and starts it again on the same
/// port, as an operator's restart does.
pub struct Redis {
    pub process: ChildGuard,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let process = Self::spawn(dir, addr);
        Self {
            process,
            addr,
            dir: dir.to_owned(),
        }
    }

    fn spawn(dir: &Path, addr: SocketAddr) -> ChildGuard {
        let process = ChildGuard::spawn_logged(
            Command::new("redis-server")
                .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .args(["--dbfilename", "redis.rdb"]),
            &dir.join("redis.log"),
        );
        wait_for(LIMIT, "Redis to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
        process
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to redis")
    }

    /// `SHUTDOWN SAVE`, then the same server again (it reloads its dump).
    pub fn restart(&mut self) {
        let _: Result<(), _> = redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query(&mut self.connection());
        let _ = self.process.wait_exit(LIMIT);
        self.process = Self::spawn(&self.dir, self.addr);
    }
}

/// Every `expr` in a dashboard's panels (rows included), with Grafana's variables
/// substituted as it would for "All" (the detector's `$series` becomes one modelled
/// series' labels, as its query_result variable would pick).
pub fn dashboard_expressions(dashboard: &serde_json::Value, series: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("").to_owned();
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$job", ".*")
                    .replace("$instance", ".*")
                    .replace("$series", series);
                out.push((title, expr));
            }
        }
    }
    out
}

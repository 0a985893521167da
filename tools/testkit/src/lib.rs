//! Real servers for tests, started on free ports and stopped when dropped, so
//! no test depends on a server someone left running (the project's scripts
//! install the packages; nothing here downloads anything). Serial lines too:
//! socat's pty pairs stand in for RS-485 cables.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
///
/// # Panics
/// If the OS has no free port.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// The admin token of the gateways tests start (`GATEWAY_ADMIN_TOKEN` takes
/// no fewer than 16 characters).
pub const ADMIN_TOKEN: &str = "t-0123456789abcdef";

/// A gateway binary (`gateway` or `gateway-demo`, by the path Cargo gives
/// a test) with `args`, on these ports and data directory, with the admin
/// token [`ADMIN_TOKEN`]; its stdout piped, its stderr dropped.
///
/// # Panics
/// If the binary cannot be started.
#[must_use]
pub fn spawn_gateway(bin: &str, args: &[&str], mqtt: u16, http: u16, data: &Path) -> Child {
    Command::new(bin)
        .args(args)
        .args([
            "--mqtt-listen",
            &format!("127.0.0.1:{mqtt}"),
            "--http-listen",
            &format!("127.0.0.1:{http}"),
        ])
        .arg("--data-dir")
        .arg(data)
        .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// Waits until something accepts TCP connections on `port`.
///
/// # Panics
/// After 10 s.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free port and a new directory `PREFIX-PORT` under `parent` for one server.
fn fresh(parent: &Path, prefix: &str) -> (u16, PathBuf) {
    let port = free_port();
    let dir = parent.join(format!("{prefix}-{port}"));
    std::fs::create_dir_all(&dir).expect("server directory");
    (port, dir)
}

/// A child process that is stopped with SIGTERM on request and killed when dropped.
#[derive(Default)]
struct Process(Option<Child>);

impl Process {
    /// Stops it the way an operator would (SIGTERM, so it can save its state) and waits.
    fn terminate(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn running(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Mosquitto broker (Debian's `mosquitto`) on its own port and directory.
pub struct Mosquitto {
    child: Process,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    tls: Option<Tls>,
    /// Listeners and their settings written by the test, instead of one
    /// anonymous listener on `port`.
    listeners: Option<String>,
}

/// PEM files of a test certificate authority and a broker certificate for 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The broker's certificate.
    pub cert: PathBuf,
    /// The broker's key.
    pub key: PathBuf,
}

impl Tls {
    /// Makes a CA and a broker certificate (for `127.0.0.1` and `localhost`)
    /// with Debian's `openssl` in `dir`.
    ///
    /// # Panics
    /// If `openssl` fails.
    #[must_use]
    pub fn generate(dir: &Path) -> Tls {
        let run = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(Stdio::null())
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "openssl {args:?} failed");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fm test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("san");
        run(&[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("broker.pem"),
            key: dir.join("broker.key"),
        }
    }
}

impl Mosquitto {
    /// Starts a broker on a free port, persisting its sessions in a new
    /// directory under `parent` (so a restart keeps QoS 1 messages queued).
    ///
    /// # Panics
    /// If `mosquitto` is not installed (run `scripts/install-test-deps.sh`) or
    /// does not start.
    pub fn start(parent: &Path) -> Mosquitto {
        Self::start_with(parent, None)
    }

    /// Starts a broker that only speaks TLS, with `tls`'s certificate.
    ///
    /// # Panics
    /// As [`Mosquitto::start`].
    pub fn start_tls(parent: &Path, tls: &Tls) -> Mosquitto {
        Self::start_with(parent, Some(tls.clone()))
    }

    /// Starts a broker with the test's own `listeners` section (it may use
    /// `per_listener_settings`, password and ACL files); `port` is the one
    /// waited for and reported.
    ///
    /// # Panics
    /// As [`Mosquitto::start`].
    pub fn start_with_listeners(parent: &Path, port: u16, listeners: &str) -> Mosquitto {
        let (_, dir) = fresh(parent, "mosquitto");
        let mut m = Mosquitto {
            child: Process::default(),
            port,
            dir,
            tls: None,
            listeners: Some(listeners.to_owned()),
        };
        m.spawn();
        m
    }

    fn start_with(parent: &Path, tls: Option<Tls>) -> Mosquitto {
        let (port, dir) = fresh(parent, "mosquitto");
        let mut m = Mosquitto {
            child: Process::default(),
            port,
            dir,
            tls,
            listeners: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        let head = self
            .listeners
            .clone()
            .unwrap_or_else(|| format!("listener {} 127.0.0.1\nallow_anonymous true\n", self.port));
        let mut text = format!(
            "persistence true\npersistence_location {dir}/\n\
             autosave_interval 1\nuser root\nlog_type all\nlog_dest stderr\n{head}",
            dir = self.dir.display()
        );
        if let Some(t) = &self.tls {
            use std::fmt::Write as _;
            let _ = write!(
                text,
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            );
        }
        std::fs::write(&conf, text).expect("broker configuration");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .expect("broker log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto is not installed: run scripts/install-test-deps.sh");
        self.child = Process(Some(child));
        wait_port(self.port);
    }

    /// Stops the broker the way an operator would (SIGTERM: it saves its
    /// sessions) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the broker with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        self.child.terminate();
    }

    /// Starts a stopped broker again on its port, with its saved sessions.
    pub fn start_again(&mut self) {
        if !self.running() {
            self.spawn();
        }
    }

    /// Whether the broker process is up.
    #[must_use]
    pub fn running(&self) -> bool {
        self.child.running()
    }

    /// The broker's log so far (for failure messages).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

/// A VictoriaMetrics server (Debian's `victoria-metrics`): it accepts the
/// InfluxDB v2 write API (`/api/v2/write`), which no InfluxDB 2 package here
/// offers, and exports what it stored.
pub struct VictoriaMetrics {
    child: Process,
    /// The HTTP port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl VictoriaMetrics {
    /// Starts a server on a free port with its data under `parent`.
    ///
    /// # Panics
    /// If `victoria-metrics` is not installed (run `scripts/install-test-deps.sh`).
    pub fn start(parent: &Path) -> VictoriaMetrics {
        let (port, dir) = fresh(parent, "victoria");
        let mut v = VictoriaMetrics {
            child: Process::default(),
            port,
            dir,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("vm.log"))
            .expect("log");
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.dir.join("data").display()))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("victoria-metrics is not installed: run scripts/install-test-deps.sh");
        self.child = Process(Some(child));
        wait_port(self.port);
    }

    /// Stops the server (SIGTERM) and waits for it: an outage.
    pub fn stop(&mut self) {
        self.child.terminate();
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&mut self) {
        if !self.child.running() {
            self.spawn();
        }
    }
}

/// A pty pair joined by socat (Debian's `socat`): two serial devices that
/// are the two ends of one line, standing in for an RS-485 cable between a
/// Modbus master and its slaves. Both ends are raw (`raw,echo=0`): bytes
/// pass unchanged and nothing is echoed back to the writer.
pub struct PtyPair {
    _child: Process,
    /// One end (a symlink to its `/dev/pts/N`).
    pub a: PathBuf,
    /// The other end.
    pub b: PathBuf,
    log: PathBuf,
}

impl PtyPair {
    /// Starts socat with its two ends linked as `dir/a` and `dir/b` and
    /// waits until both exist; socat is killed when the pair is dropped.
    ///
    /// # Panics
    /// If socat is not installed (run `scripts/install-test-deps.sh`) or
    /// makes no pair within 10 s.
    #[must_use]
    pub fn open(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let log = dir.join("socat.log");
        let stderr = File::create(&log).expect("socat log");
        let child = Command::new("socat")
            .args(["-d", "-d"])
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("socat is not installed: run scripts/install-test-deps.sh");
        let pair = PtyPair {
            _child: Process(Some(child)),
            a,
            b,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(pair.a.exists() && pair.b.exists()) {
            assert!(Instant::now() < deadline, "socat made no pty pair:\n{}", pair.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        pair
    }

    /// socat's log so far (for failure messages).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An HTTP/1.1 answer read to its end, as status code and body (a chunked
/// body, such as a streamed export, joined): the API is plain JSON over
/// HTTP, so a socket and a request line are all a test needs.
#[must_use]
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let out = String::from_utf8_lossy(raw).into_owned();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    if !chunked {
        return (status, body.to_owned());
    }
    let mut rest = body;
    let mut joined = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        joined.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (status, joined)
}

/// `GET path` on 127.0.0.1:`port` (blocking), with a bearer token if given:
/// status code and body.
///
/// # Panics
/// If nothing listens on the port.
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes())
        .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    parse_response(&raw)
}

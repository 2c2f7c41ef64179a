//! Running the real `synapse-token-auth` binary: sockets handed over as systemd would, a notify
//! socket the test reads, and a minimal HTTP/1.1 client for unix and TCP sockets.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::AsRawFd,
        unix::{
            net::{UnixDatagram, UnixListener, UnixStream},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_synapse-token-auth");

/// A temporary directory with a config file, a notify socket and the daemon's stderr.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub notify: UnixDatagram,
}

impl Scratch {
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.toml"), config).expect("config");
        let notify = UnixDatagram::bind(dir.path().join("notify")).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self { dir, notify }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config(), config).expect("config");
    }

    /// The next notification datagram, as text.
    pub fn next_notification(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Waits for a notification containing `line` (e.g. `READY=1`), returning everything seen.
    pub fn wait_for(&self, line: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.next_notification();
            let found = message.lines().any(|l| l == line);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    fn stderr_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("stderr"))
            .expect("stderr file")
    }

    /// Starts the daemon with `listeners` passed as fds 3.. the way systemd does it:
    /// `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` equal to the daemon's own pid.
    pub fn spawn_activated(&self, listeners: &[(&str, i32)]) -> Daemon {
        self.spawn_activated_with(listeners, &[])
    }

    /// Starts the daemon socket-activated on `verify.sock` here (named `verify`) and a TCP port
    /// of 127.0.0.1 (named `verify-tcp`), as the shipped units pass them; returns the daemon,
    /// the socket's path and the TCP address.
    pub fn spawn_on_unix_and_tcp(&self) -> (Daemon, PathBuf, std::net::SocketAddr) {
        let unix_path = self.path("verify.sock");
        let unix = unix_listener(&unix_path);
        let tcp = tcp_listener();
        let addr = tcp.local_addr().expect("addr");
        let daemon =
            self.spawn_activated(&[("verify", raw_fd(&unix)), ("verify-tcp", raw_fd(&tcp))]);
        (daemon, unix_path, addr)
    }

    /// [`Scratch::spawn_activated`] with extra environment variables.
    pub fn spawn_activated_with(
        &self,
        listeners: &[(&str, i32)],
        env: &[(String, PathBuf)],
    ) -> Daemon {
        let names: Vec<&str> = listeners.iter().map(|(n, _)| *n).collect();
        let fds: Vec<i32> = listeners.iter().map(|(_, fd)| *fd).collect();
        let mut command = Command::new("sh");
        // The shell's pid becomes the daemon's pid through exec, so LISTEN_PID matches.
        command
            .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, BIN, "serve"])
            .env("SYNAPSE_TOKEN_AUTH_CONFIG", self.config())
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .envs(env.iter().map(|(k, v)| (k, v)));
        self.daemon_io(&mut command);
        // SAFETY: only dup2 and fcntl, which are async-signal-safe, run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Move the listeners out of the way first: a listener may already sit on 3 or 4.
                for (i, fd) in fds.iter().enumerate() {
                    if libc::dup2(*fd, 100 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for i in 0..fds.len() as i32 {
                    // dup2 to a new number clears FD_CLOEXEC on the copy, as systemd leaves it.
                    if libc::dup2(100 + i, 3 + i) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Daemon {
            child: command.spawn().expect("spawn daemon"),
        }
    }

    /// Starts the daemon on the addresses of its configuration file.
    pub fn spawn_configured(&self) -> Daemon {
        Daemon {
            child: self.configured_command().spawn().expect("spawn daemon"),
        }
    }

    /// The command that [`Scratch::spawn_configured`] runs, for tests that change how it starts.
    pub fn configured_command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("LISTEN_FDS");
        self.daemon_io(&mut command);
        command
    }

    /// What every test daemon gets: this scratch's notify socket, stderr to its file, and
    /// nothing from the caller's environment that changes what the tests read.
    fn daemon_io(&self, command: &mut Command) {
        command
            .env("NOTIFY_SOCKET", self.path("notify"))
            .env_remove("JOURNAL_STREAM")
            // The tests read the daemon's log; a RUST_LOG from the caller would change it.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr_file());
    }
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` once the daemon has a handler for it (bit set in `SigCgt` of
    /// /proc/PID/status): a signal that arrives before the handler is installed would take its
    /// default action, and the test would be testing start-up timing instead of the daemon.
    pub fn signal(&self, signal: i32) {
        let bit = 1u64 << (signal - 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.signal_mask("SigCgt") & bit == 0 {
            assert!(
                Instant::now() < deadline,
                "daemon installed no handler for signal {signal} within 10 s\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill");
    }

    /// Waits up to 10 s for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not exit within 10 s\n{}", self.diagnostics());
    }

    /// One of the hexadecimal signal masks of /proc/PID/status (`SigCgt`, `SigBlk`, ...).
    fn signal_mask(&self, name: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    }

    /// What a hung daemon is doing: its signal state and, per thread, where it sleeps.
    pub fn diagnostics(&self) -> String {
        let pid = self.pid();
        let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
        let mut out: String = read(format!("/proc/{pid}/status"))
            .lines()
            .filter(|l| l.starts_with("State") || l.starts_with("Sig") || l.starts_with("ShdPnd"))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let dir = task.path().display().to_string();
                out.push_str(&format!(
                    "thread {} {:?}: wchan {:?}, syscall {:?}\n",
                    task.file_name().to_string_lossy(),
                    read(format!("{dir}/comm")).trim(),
                    read(format!("{dir}/wchan")),
                    read(format!("{dir}/syscall")).trim(),
                ));
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unix_listener(path: &Path) -> UnixListener {
    UnixListener::bind(path).expect("bind unix listener")
}

pub fn tcp_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind tcp listener")
}

pub fn raw_fd(listener: &impl AsRawFd) -> i32 {
    listener.as_raw_fd()
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole response.
pub fn request(stream: impl Read + Write, method: &str, path: &str, body: &[u8]) -> Response {
    request_with(stream, method, path, &[], body)
}

/// [`request`] with extra header lines such as `Authorization: Bearer x`.
pub fn request_with(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Response {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // A server may answer (413) and close before reading the whole body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response { status, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub fn unix_stream(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect unix socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

pub fn unix_request(path: &Path, method: &str, uri: &str, body: &[u8]) -> Response {
    request(unix_stream(path), method, uri, body)
}

/// Writes `bytes` as they are and reads until the daemon closes the connection: for requests no
/// HTTP client would send.
pub fn unix_raw(path: &Path, bytes: &[u8]) -> String {
    let mut stream = unix_stream(path);
    // The daemon may answer and close before it has read everything.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

pub fn tcp_request(addr: std::net::SocketAddr, method: &str, uri: &str, body: &[u8]) -> Response {
    let stream = TcpStream::connect(addr).expect("connect tcp socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    request(stream, method, uri, body)
}

/// `POST /v1/verify` over the unix socket at `path`, for `token` and login user `user`.
pub fn verify_over_unix(path: &Path, token: &str, user: &str) -> Response {
    unix_request(path, "POST", "/v1/verify", &verify_body(token, user))
}

/// The JSON body of a verify request.
pub fn verify_body(token: &str, user: &str) -> Vec<u8> {
    serde_json::json!({ "token": token, "user": user, "server_name": super::SERVER })
        .to_string()
        .into_bytes()
}

/// A configuration with the test secret, one worker, listening on the unix socket `socket`;
/// `server_extra` adds lines to `[server]`.
pub fn unix_config(socket: &Path, server_extra: &str) -> String {
    format!(
        "secret = \"{}\"\n[server]\nlisten = [\"unix:{}\"]\nworkers = 1\n{server_extra}",
        super::SECRET,
        socket.display()
    )
}

/// A configuration with the test secret, and listen addresses that cannot be bound, so that a
/// test passes only if the daemon really uses the sockets it was handed.
pub fn activated_config(extra: &str) -> String {
    format!(
        "secret = \"{}\"\n{extra}\n[server]\nlisten = [\"unix:/nonexistent/dir/verify.sock\"]\nworkers = 1\n",
        super::SECRET
    )
}

/// Serves `body` as the key set to the first `count` connections, then closes the port.
pub fn serve_jwks(body: String, count: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.expect("accept");
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).expect("write");
        }
    });
    (url, server)
}

/// Makes `command` start with `signals` blocked, as a supervisor might leave them, and with
/// `raise` (if any) already pending: the earliest a signal can reach the daemon.
pub fn with_signals_blocked(command: &mut Command, signals: &'static [i32], raise: Option<i32>) {
    // SAFETY: only sigemptyset, sigaddset, sigprocmask and raise, which are async-signal-safe,
    // run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in signals {
                libc::sigaddset(&mut set, *signal);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if let Some(signal) = raise {
                libc::raise(signal);
            }
            Ok(())
        });
    }
}

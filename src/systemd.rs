//! systemd integration without libsystemd: socket activation and readiness notification.
//!
//! Both are optional at run time: started by hand, the daemon binds its configured addresses and
//! notifications go nowhere.

use std::{
    io,
    net::TcpListener,
    os::{
        fd::{FromRawFd, OwnedFd, RawFd},
        unix::net::UnixListener,
    },
};

use sd_notify::NotifyState;

/// A listening socket handed over by systemd (or bound by the daemon itself).
#[derive(Debug)]
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Another handle on the same listening socket, for another worker.
    pub fn try_clone(&self) -> io::Result<Self> {
        match self {
            Self::Unix(l) => l.try_clone().map(Self::Unix),
            Self::Tcp(l) => l.try_clone().map(Self::Tcp),
        }
    }

    /// A short description for logs and `STATUS=`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Unix(l) => match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                Some(path) => format!("unix:{path}"),
                None => "unix:(unnamed)".to_owned(),
            },
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:(unknown)".to_owned(), |a| format!("tcp:{a}")),
        }
    }
}

/// A socket systemd passed that this daemon cannot serve on.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("cannot read the socket activation environment")]
    Environment(#[source] io::Error),
    #[error("inherited fd {fd} ({name}) is not a listening stream socket: {why}")]
    Unusable {
        fd: RawFd,
        name: String,
        why: String,
    },
}

/// Takes the sockets passed by systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
///
/// Returns an empty list when the process was not socket-activated. Call it before any thread
/// starts: it reads and clears the environment variables so that child processes do not inherit
/// them, and each fd is taken over exactly once.
pub fn take_activated_listeners() -> Result<Vec<(String, Listener)>, ActivationError> {
    // SAFETY: called at the top of `main`, before the async runtime or any other thread exists,
    // so nothing reads the environment concurrently while the variables are removed.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .map_err(ActivationError::Environment)?;
    fds.map(|(fd, name)| classify(fd, name)).collect()
}

fn classify(fd: RawFd, name: String) -> Result<(String, Listener), ActivationError> {
    let unusable = |why: String| ActivationError::Unusable {
        fd,
        name: name.clone(),
        why,
    };
    if sock_opt(fd, libc::SO_TYPE).map_err(|e| unusable(e.to_string()))? != libc::SOCK_STREAM {
        return Err(unusable(
            "not SOCK_STREAM (use ListenStream= in the .socket unit)".into(),
        ));
    }
    if sock_opt(fd, libc::SO_ACCEPTCONN).map_err(|e| unusable(e.to_string()))? == 0 {
        return Err(unusable(
            "not listening (Accept=yes is not supported)".into(),
        ));
    }
    let family = sock_opt(fd, libc::SO_DOMAIN).map_err(|e| unusable(e.to_string()))?;
    // SAFETY: systemd passed this fd to this process for its exclusive use, and
    // `take_activated_listeners` hands out each fd once (sd-notify cleared the environment).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = match family {
        libc::AF_UNIX => Listener::Unix(UnixListener::from(owned)),
        libc::AF_INET | libc::AF_INET6 => Listener::Tcp(TcpListener::from(owned)),
        other => {
            return Err(unusable(format!(
                "address family {other} is not unix or tcp"
            )));
        }
    };
    // tokio requires non-blocking listeners; systemd hands them over blocking.
    match &listener {
        Listener::Unix(l) => l.set_nonblocking(true),
        Listener::Tcp(l) => l.set_nonblocking(true),
    }
    .map_err(|e| unusable(e.to_string()))?;
    Ok((name, listener))
}

fn sock_opt(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to valid, correctly sized storage for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends state changes to the service manager. Best effort: a daemon started by hand has no
/// `NOTIFY_SOCKET`, and a failed notification must never stop verification.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(
            error = &err as &dyn std::error::Error,
            "cannot notify systemd"
        );
    }
}

/// `READY=1` with a status line.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with the monotonic timestamp that `Type=notify-reload` expects.
pub fn notify_reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Feeds systemd's watchdog (`WatchdogSec=`) at half its interval, for as long as the future is
/// polled; returns at once when the watchdog is off. It runs on the thread that handles signals
/// and reloads, so a daemon stuck there is restarted by systemd.
pub async fn feed_watchdog() {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticks = tokio::time::interval(timeout / 2);
    loop {
        ticks.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

/// `STOPPING=1`.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Blocks the signals the daemon is controlled with (SIGHUP, SIGINT, SIGTERM) until
/// [`unblock_control_signals`]: one that arrives during start-up stays pending instead of taking
/// its default action (SIGHUP would kill the process) and reaches the handlers once they exist.
/// Call before any thread is spawned: threads inherit the mask.
pub fn block_control_signals() {
    set_control_signals(libc::SIG_BLOCK);
}

/// Unblocks the control signals once their handlers are installed. Also needed when the
/// process was started with them blocked: systemd starts services with an empty signal mask, but
/// other supervisors and shells may exec us with SIGTERM or SIGHUP blocked, which would leave a
/// daemon that ignores `stop` and `reload`. Threads spawned afterwards inherit the mask.
pub fn unblock_control_signals() {
    set_control_signals(libc::SIG_UNBLOCK);
}

fn set_control_signals(how: libc::c_int) {
    // SAFETY: sigemptyset/sigaddset fill a set we own; pthread_sigmask only changes this thread's
    // mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

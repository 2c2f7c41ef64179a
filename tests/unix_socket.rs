//! The daemon's unix-socket connections are watched for reading only: a client reading its
//! answer does not wake the worker. (Writing when the client reads late is tested in
//! `server::unix`.)
#![cfg(feature = "daemon")]

mod common;

use std::{
    io::{Read, Write},
    thread,
    time::Duration,
};

use common::daemon::*;

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: verifier\r\n\r\n";

/// How often the daemon's worker thread has gone to sleep and been woken so far.
fn worker_wakes(daemon: &Daemon) -> u64 {
    let tasks = format!("/proc/{}/task", daemon.pid());
    for task in std::fs::read_dir(&tasks).expect("the daemon's threads") {
        let task = task.expect("a thread").path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if name.trim() != "worker-0" {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).expect("thread status");
        return status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
    }
    panic!("no worker-0 thread in {tasks}");
}

/// Reads one `/healthz` answer (it has a Content-Length, and `ok\n` ends it).
fn read_health(stream: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\nok\n") {
        let read = stream.read(&mut byte).expect("an answer");
        assert!(
            read > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_client_reading_its_answer_does_not_wake_the_worker() {
    let scratch = Scratch::new(&activated_config(""));
    let (daemon, path, _) = scratch.spawn_on_unix_and_tcp();
    scratch.wait_for("READY=1");
    let mut stream = unix_stream(&path);
    stream.write_all(HEALTH).expect("request");
    read_health(&mut stream);
    thread::sleep(Duration::from_millis(50));

    let requests = 300;
    let before = worker_wakes(&daemon);
    for _ in 0..requests {
        // Long enough for the worker to go back to sleep between requests.
        thread::sleep(Duration::from_millis(2));
        stream.write_all(HEALTH).expect("request");
        assert!(read_health(&mut stream).starts_with("HTTP/1.1 200 OK"));
    }
    thread::sleep(Duration::from_millis(50));
    let wakes = worker_wakes(&daemon) - before;
    // One wake per request. Registered for writability too, the worker is also woken each time
    // the client reads an answer before the worker slept again (about 4 requests in 10 here).
    assert!(
        wakes <= requests * 115 / 100,
        "{wakes} wakes of the worker for {requests} requests"
    );
}

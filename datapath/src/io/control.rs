//! The control socket of a running datapath: a Unix stream socket, owner-only (mode 0600), one
//! command per connection — `status`, `stats`, `flows`, `conntrack`, `trace` — answered as text by
//! the main thread, which asks the workers between batches for what is theirs. A listener thread
//! accepts and forwards; nothing the socket does can block a worker.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

/// The commands the socket takes (`trace IFACE HEXFRAME` simulates a frame on a copy of the state).
pub const COMMANDS: &[&str] = &["status", "stats", "flows", "conntrack", "trace"];

/// One command and where its answer goes.
pub struct Request {
    pub command: String,
    pub reply: Sender<String>,
}

/// The listening side; removes its socket file when dropped.
pub struct Server {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on `path` until `stop`; requests arrive on the returned receiver.
pub fn serve(path: &Path, stop: Arc<AtomicBool>) -> std::io::Result<(Server, Receiver<Request>)> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let (tx, rx) = bounded::<Request>(16);
    let thread = std::thread::Builder::new().name("control".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => answer(stream, &tx),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    })?;
    Ok((Server { path: path.to_path_buf(), thread: Some(thread) }, rx))
}

fn answer(stream: UnixStream, tx: &Sender<Request>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let (reply, wait) = bounded(1);
    let text = match tx.send_timeout(Request { command: line.trim().to_string(), reply }, Duration::from_secs(2)) {
        Ok(()) => wait.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| "error: the datapath did not answer".to_string()),
        Err(_) => "error: the datapath is busy".to_string(),
    };
    let mut s = &stream;
    let _ = s.write_all(text.as_bytes());
    let _ = s.write_all(b"\n");
}

/// Send `command` to the datapath listening on `path` and return its answer.
pub fn ask(path: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out)?;
    Ok(out)
}

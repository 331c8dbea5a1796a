//! A real etcd server for tests and benches (Debian's etcd-server): on loopback ports of its
//! own, its data in a directory of its own, killed and removed when dropped. No mock stands in
//! for etcd anywhere.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS files for the server: its certificate and key, and the CA its clients' certificates
/// must be signed by (clients must present one).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    client: u16,
    peer: u16,
    tls: Option<ServerTls>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Server {
    /// A new server, answering; `None`, with a line saying why, where etcd is not installed
    /// (`apt-get install etcd-server`; CI installs it).
    pub fn start(tls: Option<ServerTls>) -> Option<Server> {
        if Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            eprintln!("skipped: needs an etcd server (Debian's etcd-server; .ci/run installs it)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("edgepath-etcd-{}-{}", std::process::id(), free_port()));
        let mut s = Server { child: None, dir, client: free_port(), peer: free_port(), tls };
        s.restart();
        Some(s)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client)
    }

    /// Where the server keeps its data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kill it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it (again, on the same ports and data) and wait until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::create_dir_all(&self.dir);
        let url = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::File::create(self.dir.join("etcd.log")).ok();
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log.map_or(Stdio::null(), Stdio::from));
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file").arg(&t.cert).arg("--key-file").arg(&t.key);
            cmd.arg("--trusted-ca-file").arg(&t.client_ca).arg("--client-cert-auth");
        }
        self.child = cmd.spawn().ok();
        // Answering: a TCP connection is taken (a request proper is the test's own business).
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if std::net::TcpStream::connect(("127.0.0.1", self.client)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not start; its log: {}", std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA made here, in `dir`, with openssl, and two certificates it signs (for 127.0.0.1 and
/// localhost): the server's TLS files, and a client's. `None`, with a line saying why, where
/// openssl is missing.
pub fn test_ca(dir: &Path) -> Option<(ServerTls, crate::Tls)> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: needs openssl to make the test CA");
        return None;
    }
    let _ = std::fs::create_dir_all(dir);
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
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
        "/CN=test-ca",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n").ok()?;
    for name in ["server", "client"] {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]);
        openssl(
            &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &pem, "-days", "2"]
                .into_iter()
                .chain(["-extfile", "ext.cnf"])
                .collect::<Vec<_>>(),
        );
    }
    let server = ServerTls { cert: dir.join("server.pem"), key: dir.join("server.key"), client_ca: dir.join("ca.pem") };
    let client = crate::Tls { ca: Some(dir.join("ca.pem")), cert: Some(dir.join("client.pem")), key: Some(dir.join("client.key")) };
    Some((server, client))
}

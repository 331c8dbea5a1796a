//! The etcd arguments `run` and `snapshot` share (SPEC §9.1), and etcd's follower as the live
//! datapath's snapshot source.

use std::path::PathBuf;

use clap::Args;
use datapath::io::source::{Feed, Version};
use edgepath_etcd::{Config, Follower, Tls};

#[derive(Args, Clone, Default)]
pub struct EtcdArgs {
    /// etcd's client URLs, comma-separated (http://host:port, or https:// with the TLS options):
    /// the snapshot published there (SPEC §9.1) instead of a file.
    #[arg(long, value_name = "URL[,URL…]")]
    pub etcd: Option<String>,
    /// The key prefix the snapshot is published under: `P/<collection>/<id>` per resource,
    /// `P/version`, `P/agents/<host>`.
    #[arg(long, value_name = "P", default_value = "/edgepath", requires = "etcd")]
    pub prefix: String,
    /// The CA certificate (PEM) that signs etcd's servers.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub etcd_cacert: Option<PathBuf>,
    /// This client's certificate (PEM), where etcd asks for one.
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_cert"])]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdArgs {
    /// The etcd named, if one is.
    pub fn config(&self) -> Result<Option<Config>, String> {
        let Some(endpoints) = &self.etcd else { return Ok(None) };
        let tls = Tls { ca: self.etcd_cacert.clone(), cert: self.etcd_cert.clone(), key: self.etcd_key.clone() };
        Config::new(endpoints, &self.prefix, tls).map(Some).map_err(|e| e.0)
    }

    /// The etcd named; `command` needs one.
    pub fn required(&self, command: &str) -> Result<Config, String> {
        self.config()?.ok_or_else(|| format!("{command} needs --etcd URL (and --prefix P)"))
    }
}

/// etcd's follower as the datapath's snapshot source.
pub struct EtcdFeed(pub Follower);

impl Feed for EtcdFeed {
    fn describe(&self) -> String {
        self.0.describe().to_string()
    }

    fn latest(&mut self) -> Option<Version> {
        self.0.latest().map(|p| Version { document: p.document.map_err(|e| e.0), origin: p.origin })
    }

    fn report(&mut self, status: &serde_json::Value) {
        self.0.report(status.to_string());
    }

    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.0.wake_fd())
    }
}

//! `edgepath replay` (SPEC §4): frames from `IN_DIR/<interface>.pcap` through the datapath in
//! timestamp order (ties: interface name, then file order), and what it sends on each interface
//! into `OUT_DIR/<interface>.pcap`, stamped with the timestamp of the input that caused it.
//!
//! pcap I/O is pcap-file's; both byte orders and both timestamp resolutions are read. Output
//! files are little-endian, microsecond-resolution classic pcap with Ethernet link type, so the
//! same input gives the same bytes on every machine.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use rules::model::Mac;

pub use super::summary::{ReplaySummary, WorkerLoad};
use crate::batch::{RxBatch, BATCH};
use crate::fastpath::{Outcome, PureJob, TxBuf};
use crate::iface::IfIdx;
use crate::time::Instant;
use crate::wire::describe::describe;
use crate::Datapath;

/// The header of every file replay writes: classic pcap, little-endian, microseconds,
/// Ethernet, snap length 65535 — the same bytes on every machine.
pub const OUTPUT_HEADER: PcapHeader = PcapHeader {
    version_major: 2,
    version_minor: 4,
    ts_correction: 0,
    ts_accuracy: 0,
    snaplen: 65535,
    datalink: DataLink::ETHERNET,
    ts_resolution: TsResolution::MicroSecond,
    endianness: Endianness::Little,
};

/// What `replay` is asked to do.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub snapshot: PathBuf,
    pub host: String,
    pub in_dir: PathBuf,
    pub out_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub threads: usize,
    pub macs: HashMap<String, Mac>,
    /// Off: every packet is simulated (the flow cache's own test).
    pub flow_cache: bool,
    /// The tables' bounds (SPEC §9).
    pub limits: crate::limits::Limits,
}

/// Why a replay could not run; each renders as the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Snapshot(#[from] rules::FileError),
    #[error("{}: {}", .snapshot.display(), .error)]
    Host { snapshot: PathBuf, error: crate::iface::IfaceError },
    #[error("--threads {0}: at least one worker is needed")]
    Threads(usize),
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    #[error("{}: not a readable classic pcap file: {}", .0.display(), .1)]
    Pcap(PathBuf, String),
    #[error("{}: link type {:?} is not Ethernet", .0.display(), .1)]
    LinkType(PathBuf, DataLink),
    #[error("{}: interface {:?} is not bound by any port of host {}", .0.display(), .1, .2)]
    UnboundInterface(PathBuf, String, String),
    #[error("{}: no output file for interface name {:?}: it {}", .0.display(), .1, .2)]
    UnsafeName(PathBuf, String, &'static str),
}

struct Input {
    ts: Duration,
    iface: IfIdx,
    name_rank: usize,
    data: Vec<u8>,
}

/// Run a replay.
pub fn replay(cfg: &ReplayConfig) -> Result<ReplaySummary, ReplayError> {
    replay_traced(cfg, Hooks::default())
}

/// What a replay reports as it goes.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Each input frame's description and the steps the simulation took for it (or that it took
    /// a cached flow).
    pub trace: Option<&'a mut dyn FnMut(String)>,
    /// Frames done and frames in all, now and then.
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
}

/// Run a replay, reporting through `hooks`.
pub fn replay_traced(cfg: &ReplayConfig, hooks: Hooks) -> Result<ReplaySummary, ReplayError> {
    let Hooks { mut trace, mut progress } = hooks;
    if cfg.threads == 0 {
        return Err(ReplayError::Threads(cfg.threads));
    }
    let topo = Arc::new(rules::load_topology(&cfg.snapshot)?);
    let version = topo.version;
    let mut dp = Datapath::new(topo, &cfg.host, &cfg.macs)
        .map_err(|error| ReplayError::Host { snapshot: cfg.snapshot.clone(), error })?
        .with_limits(cfg.limits);
    dp.set_flow_cache(cfg.flow_cache);
    dp.set_trace(trace.is_some());
    let inputs = read_inputs(&cfg.in_dir, &dp, &cfg.host)?;
    if let Some(d) = &cfg.log_dir {
        std::fs::create_dir_all(d).map_err(|e| ReplayError::Io(d.clone(), e))?;
        dp.set_fw_log_dir(d.clone());
    }
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| ReplayError::Io(cfg.out_dir.clone(), e))?;
    let names: Vec<String> = dp.interfaces().list.iter().map(|i| i.name.clone()).collect();
    let mut out = Outputs { dir: cfg.out_dir.clone(), names: names.clone(), writers: HashMap::new() };
    let total = inputs.len() as u64;
    let mut workers = Workers::start(cfg.threads);
    // Alone and untraced, frames go as live mode takes them: in batches of up to BATCH frames of
    // one interface (consecutive in processing order), through the vector path, so the suites
    // check it byte for byte. Each frame keeps its own time.
    let mut rx = (workers.is_none() && trace.is_none()).then(|| RxBatch::new(inputs.iter().map(|i| i.data.len()).max().unwrap_or(0)));
    let mut times = Vec::with_capacity(BATCH);
    let mut inputs = inputs.into_iter().enumerate().peekable();
    let mut next_progress = 0;
    while let Some((seq, input)) = inputs.next() {
        if let Some(p) = progress.as_mut() {
            if seq >= next_progress {
                p(seq as u64, total);
                next_progress = seq + 4096;
            }
        }
        if let Some(rx) = rx.as_mut() {
            rx.clear();
            times.clear();
            let mut push = |rx: &mut RxBatch, i: &Input| {
                times.push(i.ts);
                rx.push(&i.data, Instant::from_duration(i.ts))
            };
            push(rx, &input);
            while !rx.is_full() {
                match inputs.next_if(|(_, next)| next.iface == input.iface) {
                    Some((_, next)) => push(rx, &next),
                    None => break,
                };
            }
            dp.process_batch(input.iface, rx);
            for (k, ts) in times.iter().enumerate() {
                for (oi, bytes) in dp.batch_sent(k, rx) {
                    out.write(oi, *ts, bytes)?;
                }
            }
            dp.sent();
            continue;
        }
        let now = Instant::from_duration(input.ts);
        // With workers, pure cached flows are deferred to them; alone, everything is done here.
        let outcome = match &workers {
            Some(_) => dp.process_or_defer(input.iface, &input.data, now, true),
            None => dp.process(input.iface, &input.data, now),
        };
        if let Some(t) = trace.as_mut() {
            let ts = input.ts;
            t(format!("{}.{:06} {}: {}", ts.as_secs(), ts.subsec_micros(), names[input.iface.0 as usize], describe(&input.data)));
            if dp.last_trace().is_empty() {
                t("    cached flow".to_string());
            }
            for step in dp.last_trace() {
                t(format!("    {step}"));
            }
        }
        match &mut workers {
            Some(w) => {
                let sent: Vec<(IfIdx, Vec<u8>)> = dp.tx().iter().map(|(i, f)| (i, f.to_vec())).collect();
                w.add(seq, input.ts, sent, outcome, input.data);
                w.write_ready(&mut out, false)?;
            }
            None => {
                for (oi, bytes) in dp.tx().iter() {
                    out.write(oi, input.ts, bytes)?;
                }
            }
        }
    }
    let per_worker = match workers {
        Some(mut w) => {
            w.write_ready(&mut out, true)?;
            w.finish()
        }
        None => Vec::new(),
    };
    let writers = out.writers;
    dp.finish();
    if let Some(p) = progress.as_mut() {
        p(total, total);
    }
    for (_, w) in writers {
        let mut inner = w.into_writer();
        std::io::Write::flush(&mut inner).map_err(|e| ReplayError::Io(cfg.out_dir.clone(), e))?;
    }
    let tables = Some(dp.tables());
    Ok(ReplaySummary { version, stats: dp.stats().clone(), interfaces: names, workers: per_worker, live: Vec::new(), tables })
}

/// Every frame of every `*.pcap` in `dir`, in processing order.
fn read_inputs(dir: &Path, dp: &Datapath, host: &str) -> Result<Vec<Input>, ReplayError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ReplayError::Io(dir.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for e in rd {
        let p = e.map_err(|e| ReplayError::Io(dir.to_path_buf(), e))?.path();
        if p.extension().is_some_and(|x| x == "pcap") {
            files.push(p);
        }
    }
    files.sort();
    let mut inputs = Vec::new();
    for (rank, path) in files.iter().enumerate() {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(iface) = dp.interfaces().by_name(&name) else {
            return Err(ReplayError::UnboundInterface(path.clone(), name, host.to_string()));
        };
        let f = File::open(path).map_err(|e| ReplayError::Io(path.clone(), e))?;
        let mut r = PcapReader::new(BufReader::new(f)).map_err(|e| ReplayError::Pcap(path.clone(), e.to_string()))?;
        if r.header().datalink != DataLink::ETHERNET {
            return Err(ReplayError::LinkType(path.clone(), r.header().datalink));
        }
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.map_err(|e| ReplayError::Pcap(path.clone(), e.to_string()))?;
            inputs.push(Input { ts: pkt.timestamp, iface, name_rank: rank, data: pkt.data.into_owned() });
        }
    }
    // Files are sorted by name, so the rank orders ties by interface name; the sort is stable,
    // so frames of one file keep their order.
    inputs.sort_by_key(|i| (i.ts, i.name_rank));
    Ok(inputs)
}

/// The output files, opened as interfaces first send.
struct Outputs {
    dir: PathBuf,
    names: Vec<String>,
    writers: HashMap<IfIdx, PcapWriter<BufWriter<File>>>,
}

impl Outputs {
    fn write(&mut self, oi: IfIdx, ts: Duration, bytes: &[u8]) -> Result<(), ReplayError> {
        let w = match self.writers.get_mut(&oi) {
            Some(w) => w,
            None => {
                let name = &self.names[oi.0 as usize];
                // Validation refuses such names; this holds whatever the snapshot says.
                if let Some(why) = rules::validate::interface_name_problem(name) {
                    return Err(ReplayError::UnsafeName(self.dir.clone(), name.clone(), why));
                }
                let path = self.dir.join(format!("{name}.pcap"));
                let f = File::create(&path).map_err(|e| ReplayError::Io(path.clone(), e))?;
                let w = PcapWriter::with_header(BufWriter::new(f), OUTPUT_HEADER)
                    .map_err(|e| ReplayError::Pcap(path.clone(), e.to_string()))?;
                self.writers.entry(oi).or_insert(w)
            }
        };
        // Microsecond output: drop the nanoseconds so the stamp is what the file can hold.
        let ts = Duration::from_micros(ts.as_micros() as u64);
        let pkt = PcapPacket::new(ts, bytes.len() as u32, bytes);
        w.write_packet(&pkt).map(drop).map_err(|e| ReplayError::Pcap(self.dir.clone(), e.to_string()))
    }
}

/// One input's frames, in order: what the datapath sent itself, then what a worker applied.
struct Slot {
    ts: Duration,
    frames: Vec<(IfIdx, Vec<u8>)>,
    waiting: bool,
}

type Job = (usize, Vec<u8>, PureJob);
type Done = (usize, Vec<(IfIdx, Vec<u8>)>);

/// Workers that apply pure cached flows (SPEC §9): each flow always goes to the same worker,
/// chosen by the fixed flow hash; everything that touches state stays with the datapath thread.
/// Frames are written in input order, so the output is the same as with one thread.
struct Workers {
    jobs: Vec<crossbeam_channel::Sender<Job>>,
    done: crossbeam_channel::Receiver<Done>,
    threads: Vec<std::thread::JoinHandle<u64>>,
    slots: std::collections::BTreeMap<usize, Slot>,
    next: usize,
}

impl Workers {
    fn start(n: usize) -> Option<Workers> {
        if n <= 1 {
            return None;
        }
        let (done_tx, done) = crossbeam_channel::unbounded::<Done>();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for k in 0..n {
            let (tx, rx) = crossbeam_channel::bounded::<Job>(1024);
            let done_tx = done_tx.clone();
            let handle = std::thread::Builder::new().name(format!("worker-{k}")).spawn(move || {
                let mut tx = TxBuf::default();
                let mut applied = 0u64;
                for (seq, data, job) in rx {
                    tx.clear();
                    job.apply(&data, &mut tx);
                    applied += 1;
                    let _ = done_tx.send((seq, tx.iter().map(|(i, f)| (i, f.to_vec())).collect()));
                }
                applied
            });
            if let Ok(h) = handle {
                threads.push(h);
                jobs.push(tx);
            }
        }
        Some(Workers { jobs, done, threads, slots: Default::default(), next: 0 })
    }

    /// Record input `seq`: the frames the datapath sent, and a job for a worker when deferred.
    fn add(&mut self, seq: usize, ts: Duration, frames: Vec<(IfIdx, Vec<u8>)>, outcome: Outcome, data: Vec<u8>) {
        let waiting = matches!(outcome, Outcome::Deferred(_));
        self.slots.insert(seq, Slot { ts, frames, waiting });
        if let Outcome::Deferred(job) = outcome {
            let w = job.worker(self.jobs.len());
            if let Some(tx) = self.jobs.get(w) {
                let _ = tx.send((seq, data, job));
            }
        }
    }

    /// Take finished jobs and write every input whose frames are all known, in order; with
    /// `all`, wait for every job.
    fn write_ready(&mut self, out: &mut Outputs, all: bool) -> Result<(), ReplayError> {
        if all {
            self.jobs.clear();
        }
        loop {
            while let Ok((seq, frames)) = self.done.try_recv() {
                if let Some(slot) = self.slots.get_mut(&seq) {
                    slot.frames.extend(frames);
                    slot.waiting = false;
                }
            }
            while self.slots.get(&self.next).is_some_and(|s| !s.waiting) {
                if let Some(slot) = self.slots.remove(&self.next) {
                    for (oi, bytes) in &slot.frames {
                        out.write(*oi, slot.ts, bytes)?;
                    }
                }
                self.next += 1;
            }
            if !all || self.slots.is_empty() {
                return Ok(());
            }
            if let Ok((seq, frames)) = self.done.recv_timeout(Duration::from_millis(100)) {
                if let Some(slot) = self.slots.get_mut(&seq) {
                    slot.frames.extend(frames);
                    slot.waiting = false;
                }
            }
        }
    }

    /// Frames each worker applied.
    fn finish(self) -> Vec<u64> {
        drop(self.jobs);
        self.threads.into_iter().map(|t| t.join().unwrap_or(0)).collect()
    }
}

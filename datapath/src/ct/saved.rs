//! Connections as a restart saves and restores them (`persist.rs`).

use super::*;

/// A connection as it is saved across a restart (`persist.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedConn {
    pub orig: CtKey,
    pub reply: CtKey,
    pub kind: SnatKind,
    pub router: RouterRef,
    pub last_seen: Instant,
    /// The progress bits (reply seen, TCP established, closing).
    pub progress: u8,
}

impl ConnTable {
    /// Every live connection, for saving.
    pub fn export(&self) -> Vec<SavedConn> {
        self.slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| SavedConn {
                orig: c.orig,
                reply: c.reply,
                kind: c.kind,
                router: c.router,
                last_seen: c.live.last_seen(),
                progress: c.live.tcp.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Put a saved connection back, with its translation and timers as they were; false (and
    /// nothing changed) when either of its tuples is taken.
    pub fn import(&mut self, c: &SavedConn) -> bool {
        if self.by_key.contains_key(&c.orig) || self.by_key.contains_key(&c.reply) {
            return false;
        }
        let h = self.insert(c.orig, c.reply, c.kind, c.router, 0, c.last_seen);
        if let Some(conn) = self.slots[h.idx as usize].conn.as_ref() {
            conn.live.tcp.store(c.progress & (SEEN_REPLY | ESTABLISHED | CLOSING), Ordering::Relaxed);
        }
        true
    }
}

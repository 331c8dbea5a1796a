//! The vector fast path (issue 14): a batch's hits are applied in place in their receive
//! buffers and sent from there, and only frames with too little room in front for the flow's
//! longer headers are copied — and either way a batch sends exactly what the frames one by one
//! send.

use std::collections::HashMap;
use std::sync::Arc;

use datapath::batch::{RxBatch, RxFrames, BATCH};
use datapath::{Datapath, IfIdx, Instant};
use edgepath_tests::repo_root;
use etherparse::PacketBuilder;
use rules::model::Mac;

const SEC: u64 = 1_000_000_000;

fn datapath(case: &str, macs: &[(&str, &str)]) -> Datapath {
    let topo = rules::load_topology(&repo_root().join("pcaps").join(case).join("snapshot.json")).expect("snapshot");
    let macs: HashMap<String, Mac> = macs.iter().map(|(i, m)| (i.to_string(), m.parse().expect("mac"))).collect();
    Datapath::new(Arc::new(topo), "host-a", &macs).expect("datapath")
}

fn udp(smac: [u8; 6], dmac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(sport, 7000).write(&mut v, &[0x5a; 40]).expect("build");
    v
}

/// A batch whose frames have no room in front: every flow that makes a frame longer must copy.
struct NoHeadroom(RxBatch, Vec<Vec<u8>>);

impl RxFrames for NoHeadroom {
    fn count(&self) -> usize {
        self.1.len()
    }
    fn frame(&self, k: usize) -> &[u8] {
        self.1.get(k).map_or(&[], |f| f)
    }
    fn buf_mut(&mut self, k: usize) -> (&mut [u8], usize) {
        (self.1.get_mut(k).map_or(&mut [], |f| f), 0)
    }
    fn buf(&self, k: usize) -> &[u8] {
        self.frame(k)
    }
    fn time(&self, k: usize) -> Instant {
        self.0.time(k)
    }
}

/// What each frame sent: interface and bytes, in order.
type Sent = Vec<Vec<(IfIdx, Vec<u8>)>>;

/// Each way of sending `frames` (arriving on `iface`) after they made their flows: one by one,
/// as a batch with room in front, as a batch with none. Returns what each sent, per frame, and
/// how many hits each applied in place.
fn three_ways(mut make: impl FnMut() -> Datapath, iface: &str, frames: &[Vec<u8>]) -> [(Sent, u64); 3] {
    let warm = |dp: &mut Datapath, i: IfIdx| {
        for f in frames {
            dp.process(i, f, Instant(SEC));
            assert!(!dp.tx().is_empty(), "every frame is forwarded: {:?}", dp.stats().drops);
        }
    };
    let mut one = make();
    let i = one.interfaces().by_name(iface).expect("interface");
    warm(&mut one, i);
    let singly: Vec<_> = frames
        .iter()
        .map(|f| {
            one.process(i, f, Instant(2 * SEC));
            one.tx().iter().map(|(o, b)| (o, b.to_vec())).collect()
        })
        .collect();
    let mut batched = |rx: &mut dyn FnMut(&mut Datapath) -> Sent| {
        let mut dp = make();
        warm(&mut dp, i);
        let misses = dp.stats().flow_misses;
        let sent = rx(&mut dp);
        assert_eq!(dp.stats().flow_misses, misses, "the batch took the cached flows");
        (sent, dp.stats().hits_in_place)
    };
    let room = batched(&mut |dp| {
        let mut rx = RxBatch::new(2048);
        frames.iter().for_each(|f| assert!(rx.push(f, Instant(2 * SEC))));
        dp.process_batch(i, &mut rx);
        (0..frames.len()).map(|k| dp.batch_sent(k, &rx).map(|(o, b)| (o, b.to_vec())).collect()).collect()
    });
    let none = batched(&mut |dp| {
        let mut t = RxBatch::new(0);
        frames.iter().for_each(|_| assert!(t.push(&[], Instant(2 * SEC))));
        let mut rx = NoHeadroom(t, frames.to_vec());
        dp.process_batch(i, &mut rx);
        (0..frames.len()).map(|k| dp.batch_sent(k, &rx).map(|(o, b)| (o, b.to_vec())).collect()).collect()
    });
    [(singly, one.stats().hits_in_place), room, none]
}

/// A floating IP's DNAT rewrites headers and keeps the length: in place, room or not.
#[test]
fn hits_that_keep_the_length_are_applied_in_place() {
    let up_router = [0x02, 0xaa, 0, 0, 0, 1];
    let edge = [0xfa, 0x16, 0x3e, 0xbb, 0, 2];
    let frames: Vec<_> = (0..BATCH as u16).map(|k| udp(up_router, edge, [198, 18, 0, k as u8], [203, 0, 113, 10], 33000 + k)).collect();
    let [(singly, a), (room, b), (none, c)] = three_ways(|| datapath("fip-dnat-inbound", &[]), "uplink0", &frames);
    assert_eq!(room, singly, "a batch sends what the frames one by one send");
    assert_eq!(none, singly);
    assert_eq!((a, b, c), (0, BATCH as u64, BATCH as u64), "one by one copies; a batch applies every hit in place");
}

/// VXLAN encapsulation puts 50 bytes in front: in place in a batch's headroom, copied where
/// there is none — the same bytes either way.
#[test]
fn hits_that_need_room_in_front_use_the_headroom_or_are_copied() {
    let make = || {
        let mut dp = datapath("vxlan-host-a", &[("ul0", "02:00:00:00:0a:01")]);
        let ul = dp.interfaces().by_name("ul0").expect("ul0");
        // host-b's underlay address answers ARP.
        let mut arp = vec![0x02, 0, 0, 0, 0x0a, 0x01, 0x02, 0, 0, 0, 0x0b, 0x01, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2];
        arp.extend_from_slice(&[0x02, 0, 0, 0, 0x0b, 0x01, 192, 168, 50, 2, 0x02, 0, 0, 0, 0x0a, 0x01, 192, 168, 50, 1]);
        dp.process(ul, &arp, Instant(SEC / 2));
        dp
    };
    let (vm1, vm4) = ([0xfa, 0x16, 0x3e, 0, 0, 0x03], [0xfa, 0x16, 0x3e, 0, 0, 0x05]);
    let frames: Vec<_> = (0..BATCH as u16).map(|k| udp(vm1, vm4, [10, 0, 0, 3], [10, 0, 0, 5], 1024 + k)).collect();
    let [(singly, _), (room, b), (none, c)] = three_ways(make, "tap-vm1", &frames);
    assert!(singly.iter().all(|s| s.len() == 1 && s[0].1.len() == frames[0].len() + 50), "each leaves encapsulated");
    assert_eq!(room, singly, "a batch sends what the frames one by one send");
    assert_eq!(none, singly, "copied where there is no room, the same bytes");
    assert_eq!((b, c), (BATCH as u64, 0), "in place with headroom, copied without");
}

use super::*;

fn key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> CtKey {
    CtKey { proto: IPPROTO_UDP, src: src.into(), sport, dst: dst.into(), dport }
}

const GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const R: RouterRef = RouterRef(0);

#[test]
fn port_preserving_then_next_free() {
    let mut t = ConnTable::default();
    let now = Instant(0);
    let a = t.create(key([10, 0, 0, 3], 5000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, now).unwrap();
    let b = t.create(key([10, 0, 0, 4], 5000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, now).unwrap();
    assert_eq!(t.get(a).unwrap().nat_src(), (GW.into(), 5000));
    assert_eq!(t.get(b).unwrap().nat_src(), (GW.into(), 5001));
    // The reply finds the connection from the other side.
    let r = t.lookup(&key([8, 8, 8, 8], 53, GW.octets(), 5001), now).unwrap();
    assert_eq!(r.dir, Dir::Reply);
    assert_eq!(t.get(r).unwrap().orig.src, Ipv4Addr::new(10, 0, 0, 4));
}

#[test]
fn exhaustion_never_reuses_live_mappings() {
    let mut t = ConnTable::with_pool((2000, 2001));
    let now = Instant(0);
    for i in 0..2 {
        t.create(key([10, 0, 0, 3 + i], 7000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, now).unwrap();
    }
    assert_eq!(t.create(key([10, 0, 0, 9], 7000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, now), Err(PortsExhausted));
    // Another destination has its own ports.
    assert!(t.create(key([10, 0, 0, 9], 7000, [8, 8, 4, 4], 53), GW, SnatKind::Default, R, 0, now).is_ok());
    // Once the UDP timeout passes, the ports come back.
    let later = now.saturating_add(UDP_TIMEOUT + Duration::from_secs(1));
    assert!(t.create(key([10, 0, 0, 9], 7000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, later).is_ok());
}

#[test]
fn timeouts_follow_the_rfcs() {
    let mut t = ConnTable::default();
    let t0 = Instant(0);
    let h = t.create(key([10, 0, 0, 3], 5000, [8, 8, 8, 8], 53), GW, SnatKind::Default, R, 0, t0).unwrap();
    assert!(t.touch(h, 0, t0.saturating_add(Duration::from_secs(299))));
    assert!(!t.touch(h, 0, t0.saturating_add(Duration::from_secs(299 + 301))));
    assert!(t.is_empty());
    // TCP: opening times out after 4 minutes, established after 2h4m.
    let k = CtKey { proto: IPPROTO_TCP, ..key([10, 0, 0, 3], 4000, [8, 8, 8, 8], 80) };
    let h = t.create(k, GW, SnatKind::Default, R, tcp_flags::SYN, t0).unwrap();
    let r = t.lookup(&t.get(h).unwrap().reply.clone(), t0).unwrap();
    assert!(t.touch(r, tcp_flags::SYN | tcp_flags::ACK, t0));
    assert!(t.touch(h, tcp_flags::ACK, t0));
    assert!(t.touch(h, tcp_flags::ACK, t0.saturating_add(Duration::from_secs(3600))));
    assert!(!t.touch(h, tcp_flags::ACK, t0.saturating_add(Duration::from_secs(3600 + 7441))));
}

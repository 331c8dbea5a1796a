//! The snapshot's value types: each parses from its text (or number) when the snapshot is read,
//! so a malformed value is reported with the path of the attribute that holds it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer};

/// An Ethernet address, written `aa:bb:cc:dd:ee:ff` (`-` separators are accepted too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.len() != 2 {
                return Err(format!("{s:?} is not a MAC address"));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
            n += 1;
        }
        if n != 6 {
            return Err(format!("{s:?} is not a MAC address"));
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A VXLAN network identifier, 0 < VNI < 2^24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;

    pub fn new(v: u32) -> Result<Vni, String> {
        if v == 0 || v > Self::MAX {
            Err(format!("{v} is not a VNI (1..={})", Self::MAX))
        } else {
            Ok(Vni(v))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Vni {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Neutron clients send segmentation ids as numbers or as numeric strings.
        let raw = serde_json::Value::deserialize(d)?;
        let not_a_vni = || serde::de::Error::custom(format!("{raw} is not a VNI (an integer 1..=16777215, or one as a string)"));
        let v = match &raw {
            serde_json::Value::Number(n) => n.as_u64().ok_or_else(not_a_vni)?,
            serde_json::Value::String(s) => s.trim().parse::<u64>().map_err(|_| not_a_vni())?,
            _ => return Err(not_a_vni()),
        };
        let v = u32::try_from(v).map_err(|_| not_a_vni())?;
        Vni::new(v).map_err(serde::de::Error::custom)
    }
}

/// A DSCP value, 0..=63.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dscp(pub u8);

impl<'de> Deserialize<'de> for Dscp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v > 63 {
            return Err(serde::de::Error::custom(format!("{v} is not a DSCP value (0..=63)")));
        }
        Ok(Dscp(v as u8))
    }
}

/// An address or a CIDR, IPv4 or IPv6 (`10.0.0.5` means `10.0.0.5/32`, `2001:db8::5` means
/// `2001:db8::5/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrOrCidr(pub IpNet);

impl AddrOrCidr {
    pub fn v4(&self) -> Option<Ipv4Net> {
        match self.0 {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        }
    }

    pub fn v6(&self) -> Option<Ipv6Net> {
        match self.0 {
            IpNet::V6(n) => Some(n),
            IpNet::V4(_) => None,
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.0, IpNet::V6(_))
    }
}

impl FromStr for AddrOrCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            s.parse::<IpNet>().map(|n| AddrOrCidr(n.trunc())).map_err(|_| format!("{s:?} is not an IPv4 or IPv6 CIDR"))
        } else {
            s.parse::<IpAddr>().map(|a| AddrOrCidr(IpNet::from(a))).map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
        }
    }
}

impl<'de> Deserialize<'de> for AddrOrCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A port or port range, `N` or `N:M`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port or port range (N or N:M)");
        let (lo, hi) = match s.split_once(':') {
            Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
            None => {
                let p = s.trim().parse().map_err(|_| bad())?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let not_a_port = || serde::de::Error::custom(format!("{raw} is not a port or a port range (`80`, `\"8000:8080\"`)"));
        match &raw {
            serde_json::Value::Number(n) => {
                n.as_u64().and_then(|n| u16::try_from(n).ok()).map(|p| PortRange { lo: p, hi: p }).ok_or_else(not_a_port)
            }
            serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            _ => Err(not_a_port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let m: Mac = "fa:16:3E:00:00:01".parse().unwrap();
        assert_eq!(m.0, [0xfa, 0x16, 0x3e, 0, 0, 1]);
        assert_eq!(m.to_string(), "fa:16:3e:00:00:01");
        assert!("fa:16:3e:00:00".parse::<Mac>().is_err());
        assert!("fa:16:3e:00:00:01:02".parse::<Mac>().is_err());
        assert!("zz:16:3e:00:00:01".parse::<Mac>().is_err());
    }

    #[test]
    fn vni_range() {
        assert!(Vni::new(0).is_err());
        assert!(Vni::new(1).is_ok());
        assert!(Vni::new(Vni::MAX).is_ok());
        assert!(Vni::new(Vni::MAX + 1).is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!("80".parse::<PortRange>().unwrap(), PortRange { lo: 80, hi: 80 });
        assert_eq!("1000:2000".parse::<PortRange>().unwrap(), PortRange { lo: 1000, hi: 2000 });
        assert!("2000:1000".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
    }
}

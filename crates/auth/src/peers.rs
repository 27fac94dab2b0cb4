//! Trusted peers: other SIP servers (for example a proxy in front of the edge) recognised by source address
//! and exempted from per-request authentication.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::AuthError;

/// A set of IPv4 and IPv6 networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedPeers {
    /// (network, mask) pairs, network already masked.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl TrustedPeers {
    /// Parses CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`) and single addresses (`192.0.2.7`, `::1`,
    /// meaning /32 or /128). Host bits below the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn new<I, S>(cidrs: I) -> Result<Self, AuthError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut peers = TrustedPeers::default();
        for cidr in cidrs {
            let cidr = cidr.as_ref().trim();
            if cidr.is_empty() {
                continue;
            }
            let bad = || AuthError::Config(format!("invalid trusted peer network {cidr:?}"));
            let (address, prefix) = match cidr.split_once('/') {
                Some((address, prefix)) => {
                    (address, Some(prefix.parse::<u8>().map_err(|_| bad())?))
                }
                None => (cidr, None),
            };
            match address.parse::<IpAddr>().map_err(|_| bad())? {
                IpAddr::V4(v4) => {
                    let prefix = prefix.unwrap_or(32);
                    if prefix > 32 {
                        return Err(bad());
                    }
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    peers.v4.push((u32::from(v4) & mask, mask));
                }
                IpAddr::V6(v6) => {
                    let prefix = prefix.unwrap_or(128);
                    if prefix > 128 {
                        return Err(bad());
                    }
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    peers.v6.push((u128::from(v6) & mask, mask));
                }
            }
        }
        Ok(peers)
    }

    /// Whether no network is configured (then nobody is trusted).
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `address` lies in a trusted network. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`, as
    /// seen on dual-stack sockets) are matched against the IPv4 networks too.
    pub fn is_trusted(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => self.trusts_v4(v4),
            IpAddr::V6(v6) => {
                self.trusts_v6(v6) || v6.to_ipv4_mapped().is_some_and(|v4| self.trusts_v4(v4))
            }
        }
    }

    fn trusts_v4(&self, address: Ipv4Addr) -> bool {
        let address = u32::from(address);
        self.v4
            .iter()
            .any(|(network, mask)| address & mask == *network)
    }

    fn trusts_v6(&self, address: Ipv6Addr) -> bool {
        let address = u128::from(address);
        self.v6
            .iter()
            .any(|(network, mask)| address & mask == *network)
    }
}

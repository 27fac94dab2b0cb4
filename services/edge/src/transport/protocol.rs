//! What a message came over: the transport protocol and the peer's address.

use std::net::{IpAddr, SocketAddr};

/// The transport protocols the edge speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// WebSocket over TLS (RFC 7118).
    Wss,
}

impl Protocol {
    /// Every protocol, in the order listeners are reported.
    pub const ALL: [Protocol; 5] = [
        Protocol::Udp,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::Ws,
        Protocol::Wss,
    ];

    /// Lower-case name, as stored in dialog records.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }

    /// Upper-case name, as written in Via (RFC 3261 §20.42, RFC 7118 §5.3).
    pub fn via_name(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Ws => "WS",
            Protocol::Wss => "WSS",
        }
    }

    /// The `transport` URI parameter naming this protocol in a Contact.
    /// RFC 7118 §5.2 defines `ws` for WebSocket whether secured or not (a
    /// `sips:` URI asks for the secure one); UDP needs no parameter.
    pub fn uri_transport(self) -> Option<&'static str> {
        match self {
            Protocol::Udp => None,
            Protocol::Tcp => Some("tcp"),
            Protocol::Tls => Some("tls"),
            Protocol::Ws | Protocol::Wss => Some("ws"),
        }
    }

    pub fn parse(name: &str) -> Option<Protocol> {
        match name.to_ascii_lowercase().as_str() {
            "udp" => Some(Protocol::Udp),
            "tcp" => Some(Protocol::Tcp),
            "tls" => Some(Protocol::Tls),
            "ws" => Some(Protocol::Ws),
            "wss" => Some(Protocol::Wss),
            _ => None,
        }
    }

    /// Reliable transports neither retransmit nor need Timer J.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Protocol::Udp)
    }

    /// Whether the transport is encrypted (fit for `sips:`).
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::Wss)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.via_name())
    }
}

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub protocol: Protocol,
    pub remote: SocketAddr,
}

/// Whether a Via sent-by host names exactly this address (IPv6 references
/// compared as addresses, so `[::1]` matches `::1`).
pub fn host_is(host: &str, ip: IpAddr) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|h| h == ip)
}

/// The unit per-source limits count by: an IPv4 address, or the /64 an
/// IPv6 address is in (one host or site is usually given a whole /64 and
/// can pick any address in it). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(u32),
    V6Net(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:192.0.2.7")),
            SourceKey::of(ip("192.0.2.7"))
        );
        assert_ne!(
            SourceKey::of(ip("127.0.0.1")),
            SourceKey::of(ip("127.0.0.2"))
        );
    }
}

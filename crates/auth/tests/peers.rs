//! Trusted peer CIDR matching.

use std::net::IpAddr;

use auth::peers::TrustedPeers;
use auth::AuthError;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipv4_and_ipv6_networks() {
    let peers =
        TrustedPeers::new(["10.0.0.0/8", "192.0.2.7", "2001:db8:1::/48", "::1", " "]).unwrap();
    assert!(peers.is_trusted(ip("10.1.2.3")));
    assert!(peers.is_trusted(ip("10.255.255.255")));
    assert!(!peers.is_trusted(ip("11.0.0.1")));
    assert!(peers.is_trusted(ip("192.0.2.7")));
    assert!(!peers.is_trusted(ip("192.0.2.8")));
    assert!(peers.is_trusted(ip("2001:db8:1:ffff::1")));
    assert!(!peers.is_trusted(ip("2001:db8:2::1")));
    assert!(peers.is_trusted(ip("::1")));
    assert!(!peers.is_trusted(ip("127.0.0.1")));
    // IPv4-mapped addresses from dual-stack sockets match IPv4 networks.
    assert!(peers.is_trusted(ip("::ffff:10.9.8.7")));
    assert!(!peers.is_trusted(ip("::ffff:11.9.8.7")));
}

#[test]
fn edge_prefixes_and_host_bits() {
    let everything = TrustedPeers::new(["0.0.0.0/0"]).unwrap();
    assert!(everything.is_trusted(ip("203.0.113.9")));
    assert!(!everything.is_trusted(ip("2001:db8::1")));
    let host_bits = TrustedPeers::new(["172.16.5.4/12"]).unwrap();
    assert!(host_bits.is_trusted(ip("172.31.0.1")));
    assert!(!host_bits.is_trusted(ip("172.32.0.1")));
    let all_v6 = TrustedPeers::new(["::/0"]).unwrap();
    assert!(all_v6.is_trusted(ip("2001:db8::1")));
    assert!(TrustedPeers::new(Vec::<String>::new()).unwrap().is_empty());
    assert!(!TrustedPeers::new(Vec::<String>::new())
        .unwrap()
        .is_trusted(ip("10.0.0.1")));
}

#[test]
fn invalid_networks_are_configuration_errors() {
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "example.com",
        "10.0.0.0/x",
        "10.0.0.0/-1",
    ] {
        assert!(
            matches!(TrustedPeers::new([bad]), Err(AuthError::Config(_))),
            "{bad}"
        );
    }
}

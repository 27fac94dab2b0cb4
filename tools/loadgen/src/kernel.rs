//! What the kernel knows about a UDP socket on this machine: how many
//! datagrams it dropped because the socket's receive buffer was full
//! (`/proc/net/udp`, Linux). Read for the tool's own sockets, to show the
//! load generator kept up, and for the target's, to show whether the server
//! did: a drop there is a request (or an answer to a NOTIFY) the server never
//! read, which the sender then retransmits.

use std::net::{IpAddr, SocketAddr};

/// Receive drops of the UDP socket bound to `addr` (or to the wildcard address on its
/// port); `None` off Linux or when no such socket exists in this network namespace.
pub fn udp_drops(addr: SocketAddr) -> Option<u64> {
    let table = match addr.ip() {
        IpAddr::V4(_) => "/proc/net/udp",
        IpAddr::V6(_) => "/proc/net/udp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    parse_drops(&text, addr)
}

/// Finds `addr` in the text of `/proc/net/udp` or `/proc/net/udp6` and returns its
/// `drops` column (the last one), summed over the sockets bound there.
pub fn parse_drops(text: &str, addr: SocketAddr) -> Option<u64> {
    let mut found = None;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (fields.get(1), fields.last()) else {
            continue;
        };
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port_hex, 16) else {
            continue;
        };
        if port != addr.port() {
            continue;
        }
        let Some(ip) = parse_ip(ip_hex) else {
            continue;
        };
        if ip != addr.ip() && !ip.is_unspecified() {
            continue;
        }
        if let Ok(n) = drops.parse::<u64>() {
            *found.get_or_insert(0) += n;
        }
    }
    found
}

/// The kernel writes addresses as the hex of their in-memory words: each 32-bit word in
/// host (little-endian on the machines this runs on) byte order.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let words = hex.len() / 8;
    if !(words == 1 || words == 4) || hex.len() != words * 8 {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for w in 0..words {
        let word = u32::from_str_radix(&hex[w * 8..w * 8 + 8], 16).ok()?;
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    Some(match words {
        1 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
        _ => {
            let array: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::from(array)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  105: 0100007F:61E4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 66303 2 000000007c3bd443 7814\n\
  106: 00000000:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 66304 2 000000007c3bd444 3\n";

    #[test]
    fn drops_are_found_by_address_and_port() {
        let node: SocketAddr = "127.0.0.1:25060".parse().expect("address");
        assert_eq!(parse_drops(UDP, node), Some(7814));
        let wildcard: SocketAddr = "127.0.0.1:5060".parse().expect("address");
        assert_eq!(parse_drops(UDP, wildcard), Some(3));
        let other: SocketAddr = "127.0.0.2:25060".parse().expect("address");
        assert_eq!(parse_drops(UDP, other), None);
    }

    #[test]
    fn ipv6_loopback_parses() {
        let text = "sl local\n 1: 00000000000000000000000001000000:1F90 x 07 0 0 0 0 0 0 0 0 0 9\n";
        let addr: SocketAddr = "[::1]:8080".parse().expect("address");
        assert_eq!(parse_drops(text, addr), Some(9));
    }
}

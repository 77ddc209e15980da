//! The trusted client address, picked the way Envoy's HTTP connection manager
//! picks it with `xff_num_trusted_hops`, plus lenient parsing of the address
//! forms proxies write (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
//! `[2001:db8::1]:443`).
//!
//! Envoy's rule (HCM docs, "x-forwarded-for", `use_remote_address: true`):
//! with 0 trusted hops the client is the downstream peer; with N > 0 it is
//! the Nth address from the right end of `X-Forwarded-For`, and when the
//! header holds fewer than N addresses Envoy falls back to the peer. Every
//! comma-separated element counts as one hop's entry, empty ones included,
//! because each proxy appends exactly one; an entry that is not an IP address
//! (empty, `unknown`, a hostname) also falls back to the peer, as Envoy's
//! `Utility::getLastAddressFromXFF` does when the entry does not parse.

use std::net::{IpAddr, SocketAddr};

/// Parses one address as a proxy or the host writes it: surrounding spaces
/// and tabs are ignored, a port is dropped (`1.2.3.4:80`, `[::1]:443`), IPv6
/// may be bracketed, a `%zone` suffix is dropped, and IPv4-mapped IPv6
/// (`::ffff:1.2.3.4`) becomes plain IPv4 so one client has one identity
/// whichever socket family it arrived on. Anything else is `None`.
///
/// # Examples
/// ```
/// use std::net::IpAddr;
/// use filter_common::xff::parse_addr;
/// assert_eq!(parse_addr(b" 10.0.0.1:45000"), Some(IpAddr::from([10, 0, 0, 1])));
/// assert_eq!(parse_addr(b"[2001:db8::1]:443"), "2001:db8::1".parse().ok());
/// assert_eq!(parse_addr(b"unknown"), None);
/// ```
pub fn parse_addr(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Ok(socket) = text.parse::<SocketAddr>() {
        socket.ip()
    } else if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        parse_v6(inner)?
    } else if let Some(rest) = text.strip_prefix('[') {
        // `[fe80::1%eth0]:443`: SocketAddr refuses zones.
        let (inner, port) = rest.split_once("]:")?;
        port.parse::<u16>().ok()?;
        parse_v6(inner)?
    } else {
        parse_v6(text)?
    };
    Some(ip.to_canonical())
}

/// IPv6 only (brackets already removed), with any `%zone` dropped.
fn parse_v6(text: &str) -> Option<IpAddr> {
    let address = text
        .split_once('%')
        .map_or(text, |(address, _zone)| address);
    address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The `n`th comma-separated entry from the right end of an
/// `X-Forwarded-For` value (1 = rightmost), untrimmed; `None` when `n` is 0
/// or the header has fewer than `n` entries.
///
/// # Examples
/// ```
/// use filter_common::xff::nth_from_right;
/// assert_eq!(nth_from_right(b"a, b,c", 2), Some(&b" b"[..]));
/// assert_eq!(nth_from_right(b"a,,c", 2), Some(&b""[..]));
/// assert_eq!(nth_from_right(b"a", 2), None);
/// ```
pub fn nth_from_right(xff: &[u8], n: u32) -> Option<&[u8]> {
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    xff.rsplit(|&b| b == b',').nth(index)
}

/// The trusted client address: with `trusted_hops == 0` the peer
/// (`source`, e.g. Envoy's `source.address` property `"10.0.0.1:45000"`),
/// otherwise the `trusted_hops`th `X-Forwarded-For` entry from the right,
/// falling back to the peer when the header is absent, too short, or that
/// entry is not an IP address.
///
/// # Examples
/// ```
/// use std::net::IpAddr;
/// use filter_common::xff::client_address;
/// let xff = Some(&b"203.0.113.128, 203.0.113.10, 203.0.113.1"[..]);
/// let peer = Some(&b"10.0.0.1:45000"[..]);
/// assert_eq!(client_address(xff, peer, 2), Some(IpAddr::from([203, 0, 113, 10])));
/// assert_eq!(client_address(xff, peer, 0), Some(IpAddr::from([10, 0, 0, 1])));
/// assert_eq!(client_address(xff, peer, 4), Some(IpAddr::from([10, 0, 0, 1])));
/// ```
pub fn client_address(
    xff: Option<&[u8]>,
    source: Option<&[u8]>,
    trusted_hops: u32,
) -> Option<IpAddr> {
    if trusted_hops > 0 {
        if let Some(ip) = xff
            .and_then(|value| nth_from_right(value, trusted_hops))
            .and_then(parse_addr)
        {
            return Some(ip);
        }
    }
    source.and_then(parse_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn address_forms_proxies_write_are_parsed() {
        for (entry, expected) in [
            ("1.2.3.4", "1.2.3.4"),
            (" 1.2.3.4 ", "1.2.3.4"),
            ("\t1.2.3.4:8080", "1.2.3.4"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8:0::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("fe80::1%eth0", "fe80::1"),
            ("[fe80::1%eth0]:443", "fe80::1"),
            ("::ffff:10.0.0.7", "10.0.0.7"),
            ("[::ffff:10.0.0.7]:1", "10.0.0.7"),
        ] {
            assert_eq!(parse_addr(entry.as_bytes()), ip(expected), "{entry:?}");
        }
    }

    #[test]
    fn non_addresses_are_refused() {
        for entry in [
            "",
            " ",
            "unknown",
            "example.com",
            "_hidden",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[1.2.3.4]",
            "[2001:db8::1",
            "[2001:db8::1]:x",
            "1.2.3.4 5.6.7.8",
            "\u{fffd}",
        ] {
            assert_eq!(parse_addr(entry.as_bytes()), None, "{entry:?}");
        }
        assert_eq!(parse_addr(b"1.2.3.4\xff"), None);
    }

    #[test]
    fn hops_count_from_the_right_including_empty_entries() {
        let xff = b"198.51.100.1, ,203.0.113.9 ,10.0.0.2";
        assert_eq!(nth_from_right(xff, 0), None);
        assert_eq!(nth_from_right(xff, 1), Some(&b"10.0.0.2"[..]));
        assert_eq!(nth_from_right(xff, 2), Some(&b"203.0.113.9 "[..]));
        assert_eq!(nth_from_right(xff, 3), Some(&b" "[..]));
        assert_eq!(nth_from_right(xff, 4), Some(&b"198.51.100.1"[..]));
        assert_eq!(nth_from_right(xff, 5), None);
        assert_eq!(nth_from_right(b"", 1), Some(&b""[..]));
    }

    #[test]
    fn zero_hops_uses_the_peer_and_ignores_the_header() {
        let peer = Some(&b"10.0.0.1:45000"[..]);
        assert_eq!(client_address(Some(b"6.6.6.6"), peer, 0), ip("10.0.0.1"));
        assert_eq!(
            client_address(None, Some(b"[2001:db8::5]:45000"), 0),
            ip("2001:db8::5")
        );
        assert_eq!(client_address(None, None, 0), None);
    }

    #[test]
    fn trusted_hops_pick_the_nth_entry_from_the_right() {
        let peer = Some(&b"10.0.0.1:45000"[..]);
        let xff = Some(&b"6.6.6.6, 203.0.113.10,[2001:db8::7]:1234"[..]);
        assert_eq!(client_address(xff, peer, 1), ip("2001:db8::7"));
        assert_eq!(client_address(xff, peer, 2), ip("203.0.113.10"));
        assert_eq!(client_address(xff, peer, 3), ip("6.6.6.6"));
    }

    #[test]
    fn more_hops_than_entries_falls_back_to_the_peer() {
        let peer = Some(&b"10.0.0.1:45000"[..]);
        assert_eq!(client_address(Some(b"6.6.6.6"), peer, 2), ip("10.0.0.1"));
        assert_eq!(client_address(None, peer, 1), ip("10.0.0.1"));
    }

    #[test]
    fn an_unparsable_trusted_entry_falls_back_to_the_peer() {
        let peer = Some(&b"10.0.0.1:45000"[..]);
        assert_eq!(
            client_address(Some(b"6.6.6.6,,1.1.1.1"), peer, 2),
            ip("10.0.0.1")
        );
        assert_eq!(client_address(Some(b"unknown"), peer, 1), ip("10.0.0.1"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(
            xff in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            peer in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            hops in 0u32..8,
        ) {
            let _ = client_address(Some(&xff), Some(&peer), hops);
        }
    }
}

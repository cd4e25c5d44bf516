//! The SSRF classifier: never panics; an IPv4 address's IPv6 spellings are never weaker than
//! it; random global addresses pass; random addresses inside every non-global range are
//! refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald::net::ssrf::{AddressPolicy, non_global_class};
use ipnet::IpNet;
use proptest::prelude::*;

/// Every non-global block, by its RFC name; random addresses inside each must be refused.
const NON_GLOBAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::/96",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "4000::/2",
    "8000::/1",
    "::/3",
];

/// First octets whose whole /8 is global unicast.
fn global_first_octet() -> impl Strategy<Value = u8> {
    prop_oneof![
        1u8..=9,
        11u8..=99,
        101u8..=126,
        128u8..=168,
        170u8..=171,
        173u8..=191,
        193u8..=197,
        199u8..=202,
        204u8..=223
    ]
}

/// A random address inside `net`.
fn inside(net: IpNet, bits: u128) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = (bits as u32) & u32::from(n.hostmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let host = bits & u128::from(n.hostmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

fn mapped(v4: Ipv4Addr) -> IpAddr {
    IpAddr::V6(v4.to_ipv6_mapped())
}

/// The RFC 6052 well-known-prefix NAT64 form, 64:ff9b::a.b.c.d.
fn nat64(v4: Ipv4Addr) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(
        (0x64_ff9b_u128 << 96) | u128::from(u32::from(v4)),
    ))
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn any_address_classifies_without_panicking(v4 in any::<u32>(), v6 in any::<u128>()) {
        let policy = AddressPolicy::default();
        for ip in [IpAddr::V4(v4.into()), IpAddr::V6(v6.into())] {
            let class = non_global_class(ip);
            prop_assert_eq!(policy.check(ip).is_ok(), class.is_none());
        }
    }

    #[test]
    fn ipv6_spellings_of_an_ipv4_address_are_never_weaker(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let policy = AddressPolicy::default();
        let v4_class = non_global_class(IpAddr::V4(v4));
        // Refused like the IPv4 address, for the same reason when it is not global...
        prop_assert_eq!(
            non_global_class(mapped(v4)),
            Some(v4_class.unwrap_or("ipv4-mapped"))
        );
        // ...and refused even when it is: no endpoint needs these spellings (see the module
        // docs of herald::net::ssrf).
        prop_assert!(policy.check(nat64(v4)).is_err());
        prop_assert!(policy.check(mapped(v4)).is_err());
        // An allowed IPv4 network admits the mapped spelling too, and nothing else.
        let allowed = AddressPolicy::new(vec![IpNet::from(IpAddr::V4(v4))]);
        prop_assert!(allowed.check(IpAddr::V4(v4)).is_ok());
        prop_assert!(allowed.check(mapped(v4)).is_ok());
    }

    #[test]
    fn random_global_addresses_are_allowed(
        first in global_first_octet(),
        rest in any::<[u8; 3]>(),
        segment in prop_oneof![0x2400u16..=0x2fff, 0x3000u16..=0x3ffe],
        tail in any::<u128>(),
    ) {
        let policy = AddressPolicy::default();
        let v4 = Ipv4Addr::new(first, rest[0], rest[1], rest[2]);
        prop_assert!(policy.check(IpAddr::V4(v4)).is_ok(), "{}", v4);
        let v6 = Ipv6Addr::from((u128::from(segment) << 112) | (tail >> 16));
        prop_assert!(policy.check(IpAddr::V6(v6)).is_ok(), "{}", v6);
    }

    #[test]
    fn random_addresses_in_every_non_global_range_are_refused(bits in any::<u128>()) {
        let policy = AddressPolicy::default();
        for net in NON_GLOBAL {
            let ip = inside(net.parse().unwrap(), bits);
            prop_assert!(policy.check(ip).is_err(), "{} in {} was allowed", ip, net);
        }
    }
}

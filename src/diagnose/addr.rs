//! Socket addresses as text, written directly for IPv4: a report of 40,000
//! findings writes 160,000 of them, and `Display` goes through the
//! formatting machinery one octet at a time. The text is `Display`'s.

use std::net::SocketAddr;

/// "[" + the longest IPv6 text (45) + "%" + a u32 scope + "]:" + a port fits.
const MAX: usize = 72;

pub struct AddrText {
    buf: [u8; MAX],
    len: usize,
}

impl AddrText {
    pub fn of(a: &SocketAddr) -> Self {
        let mut t = AddrText {
            buf: [0; MAX],
            len: 0,
        };
        match a {
            SocketAddr::V4(v4) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    t.number(u32::from(octet));
                }
                t.push(b':');
                t.number(u32::from(v4.port()));
            }
            SocketAddr::V6(_) => {
                use std::io::Write;
                let mut out = std::io::Cursor::new(&mut t.buf[..]);
                // Cannot fail: the buffer holds the longest IPv6 socket address.
                let _ = write!(out, "{a}");
                t.len = usize::try_from(out.position()).unwrap_or(0);
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn number(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            // n % 10 < 10: the cast keeps the digit.
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in &digits[i..] {
            self.push(*d);
        }
    }
}

/// For `#[serde(serialize_with)]`: the same string serde writes, faster.
pub fn serialize<S: serde::Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(AddrText::of(a).as_str())
    } else {
        serde::Serialize::serialize(a, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_as_display() {
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.1.2.3:5000",
            "10.0.0.20:80",
            "[::]:0",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:443",
            "[fe80::1%4294967295]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(AddrText::of(&addr).as_str(), addr.to_string());
            let json = serde_json::to_string(&addr).unwrap();
            let mut fast = serde_json::Serializer::new(Vec::new());
            serialize(&addr, &mut fast).unwrap();
            assert_eq!(String::from_utf8(fast.into_inner()).unwrap(), json);
        }
        // The longest form there is: mapped IPv4 text, full scope, full port.
        let a = std::net::SocketAddrV6::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse()
                .unwrap(),
            65535,
            0,
            u32::MAX,
        );
        let a = SocketAddr::V6(a);
        assert_eq!(AddrText::of(&a).as_str(), a.to_string());
    }
}

//! Targets of /proc symlinks: `socket:[123]`, `net:[4026531840]`.

use crate::model::Inode;

/// The inode of a `kind:[inode]` link target, e.g. `socket:[123]` with kind "socket".
pub fn bracket_inode(target: &[u8], kind: &[u8]) -> Option<Inode> {
    let rest = target.strip_prefix(kind)?.strip_prefix(b":[")?;
    let digits = rest.strip_suffix(b"]")?;
    parse_u64(digits)
}

/// Decimal u64 without allocation; None on empty input, junk or overflow.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_and_net_links() {
        assert_eq!(bracket_inode(b"socket:[123]", b"socket"), Some(123));
        assert_eq!(bracket_inode(b"net:[4026531840]", b"net"), Some(4026531840));
        assert_eq!(bracket_inode(b"pipe:[5]", b"socket"), None);
        assert_eq!(bracket_inode(b"socket:[]", b"socket"), None);
        assert_eq!(bracket_inode(b"socket:[12x]", b"socket"), None);
        assert_eq!(bracket_inode(b"/dev/null", b"socket"), None);
        assert_eq!(
            bracket_inode(b"socket:[99999999999999999999999]", b"socket"),
            None
        );
    }
}

//! Key encoding: every component is a big-endian u16 length followed by its bytes, so a
//! key made of the first N components is a prefix of exactly the keys below it
//! ("alice" never prefixes "alice2"), and iteration order is stable.

/// Longest id (client name, gallery id, user id) in UTF-8 bytes. The longest key is
/// `[client, gallery, user]` and a u64 (templates): 3 x (2 + 160) + 8 = 494 bytes, under
/// LMDB's 511-byte key limit, with room for the 6 bytes of `<client>@trial`.
pub const MAX_ID_BYTES: usize = 160;

/// LMDB's default (and compiled-in) largest key, in bytes.
const LMDB_MAX_KEY_BYTES: usize = 511;

const _: () = assert!(3 * (2 + MAX_ID_BYTES) + 6 + 8 <= LMDB_MAX_KEY_BYTES);

pub(crate) fn key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    for part in parts {
        push(&mut out, part.as_bytes());
    }
    out
}

pub(crate) fn key_with_id(parts: &[&str], id: u64) -> Vec<u8> {
    let mut out = key(parts);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn push(out: &mut Vec<u8>, bytes: &[u8]) {
    // Ids are limited to MAX_ID_BYTES upstream (gallery and api); a longer part would
    // still encode correctly up to 65535 bytes, and LMDB refuses keys over 511 bytes.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

/// Splits a key back into its string components and an optional trailing u64.
pub(crate) fn split(mut key: &[u8], parts: usize) -> Option<(Vec<String>, Option<u64>)> {
    let mut out = Vec::with_capacity(parts);
    for _ in 0..parts {
        if key.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([key[0], key[1]]));
        let rest = key.get(2..2 + len)?;
        out.push(String::from_utf8(rest.to_vec()).ok()?);
        key = &key[2 + len..];
    }
    let id = match key.len() {
        0 => None,
        8 => Some(u64::from_be_bytes(key.try_into().ok()?)),
        _ => return None,
    };
    Some((out, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_never_prefixes_a_longer_one() {
        let a = key(&["alice"]);
        let b = key(&["alice2", "g"]);
        assert!(!b.starts_with(&a));
        assert!(key(&["alice", "g"]).starts_with(&a));
    }

    #[test]
    fn keys_split_back_into_their_parts() {
        let k = key_with_id(&["c", "gal@x", "user@example.com"], 42);
        let (parts, id) = split(&k, 3).unwrap();
        assert_eq!(parts, ["c", "gal@x", "user@example.com"]);
        assert_eq!(id, Some(42));
    }
}

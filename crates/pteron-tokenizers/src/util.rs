//! Small helpers shared by several tokenizer families.

use std::collections::HashMap;
use std::sync::OnceLock;

/// GPT-2 style reversible mapping from bytes to printable characters.
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u32| {
            (u32::from(b'!')..=u32::from(b'~')).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b)
        };
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for (b, slot) in table.iter_mut().enumerate() {
            let b = b as u32;
            let code = if printable(b) {
                b
            } else {
                let c = next;
                next += 1;
                c
            };
            *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
        }
        table
    })
}

/// Inverse of [`byte_to_char`].
pub(crate) fn char_to_byte() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// Parses a `<0xAB>` byte-fallback piece.
pub(crate) fn parse_byte_piece(piece: &str) -> Option<u8> {
    let b = piece.as_bytes();
    if b.len() == 6 && piece.starts_with("<0x") && b[5] == b'>' {
        u8::from_str_radix(&piece[3..5], 16).ok()
    } else {
        None
    }
}

/// Formats a byte as a `<0xAB>` piece (upper-case hex, as SentencePiece and HF do).
pub(crate) fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// Splits `buf` into the longest prefix of complete UTF-8 text (invalid
/// sequences become U+FFFD) and leaves an incomplete trailing sequence in `buf`.
pub(crate) fn take_complete_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&buf[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = buf.len();
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // `valid` bytes are known to be valid UTF-8.
                out.push_str(&String::from_utf8_lossy(&buf[start..start + valid]));
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start += valid + n;
                    }
                    None => {
                        start += valid;
                        break;
                    }
                }
            }
        }
    }
    buf.drain(..start);
    out
}

/// Byte-pair merge as done by tiktoken: repeatedly merge the adjacent pair
/// whose concatenated bytes have the lowest rank (leftmost on ties).
/// Returns the boundaries of the final parts.
pub(crate) fn tiktoken_merge(ranks: &HashMap<Vec<u8>, u32>, piece: &[u8]) -> Vec<u32> {
    if piece.is_empty() {
        return Vec::new();
    }
    if let Some(&r) = ranks.get(piece) {
        return vec![r];
    }
    // bounds[i] = start of part i; last element = piece.len()
    let mut bounds: Vec<usize> = (0..=piece.len()).collect();
    let rank_of = |bounds: &[usize], i: usize| -> u32 {
        if i + 2 < bounds.len() {
            ranks
                .get(&piece[bounds[i]..bounds[i + 2]])
                .copied()
                .unwrap_or(u32::MAX)
        } else {
            u32::MAX
        }
    };
    let mut pair_ranks: Vec<u32> = (0..bounds.len() - 1).map(|i| rank_of(&bounds, i)).collect();
    loop {
        let mut best = (u32::MAX, usize::MAX);
        for (i, &r) in pair_ranks.iter().enumerate() {
            if r < best.0 {
                best = (r, i);
            }
        }
        if best.0 == u32::MAX {
            break;
        }
        let i = best.1;
        bounds.remove(i + 1);
        pair_ranks.remove(i + 1);
        pair_ranks[i] = rank_of(&bounds, i);
        if i > 0 {
            pair_ranks[i - 1] = rank_of(&bounds, i - 1);
        }
    }
    bounds
        .windows(2)
        .map(|w| ranks.get(&piece[w[0]..w[1]]).copied().unwrap_or(u32::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_roundtrip() {
        let fwd = byte_to_char();
        assert_eq!(fwd[b'A' as usize], 'A');
        assert_eq!(fwd[b' ' as usize], '\u{120}');
        assert_eq!(fwd[b'\n' as usize], '\u{10A}');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte()[&fwd[b as usize]], b);
        }
    }

    #[test]
    fn utf8_buffering() {
        let mut buf = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_complete_utf8(&mut buf), "");
        buf.push("é".as_bytes()[1]);
        assert_eq!(take_complete_utf8(&mut buf), "é");
        assert!(buf.is_empty());
        let mut buf = vec![b'a', 0xFF, b'b', 0xE2, 0x82];
        assert_eq!(take_complete_utf8(&mut buf), "a\u{FFFD}b");
        assert_eq!(buf, vec![0xE2, 0x82]);
    }

    #[test]
    fn byte_pieces() {
        assert_eq!(parse_byte_piece("<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece("<0xzz>"), None);
        assert_eq!(byte_piece(0xab), "<0xAB>");
    }
}

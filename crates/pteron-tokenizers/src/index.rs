//! [`KeyIndex`]: an open-addressing hash index from byte strings to ids whose keys live
//! elsewhere (e.g. a vocabulary's pieces), so building it copies no strings: a slot
//! holds only an id, and lookups compare against the key the id names. Built once at
//! load (tens of thousands of keys in about a millisecond), read-only afterwards.

const EMPTY: u32 = u32::MAX;

/// 64-bit hash of a byte string: 8 bytes at a time, multiply-rotate mixing (not
/// DoS-resistant; the keys come from the model file and the table's size is fixed
/// at build time, so a collision-heavy vocabulary costs load time, never memory).
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Ids indexed by the byte string each names (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIndex {
    slots: Vec<u32>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the first slot.
    shift: u32,
}

impl KeyIndex {
    /// Indexes `ids` under `key(id)`. On a key given twice, returns `Err` with the
    /// second id.
    pub(crate) fn build<'k>(
        ids: impl ExactSizeIterator<Item = u32>,
        key: impl Fn(u32) -> &'k [u8],
    ) -> Result<KeyIndex, u32> {
        // At most half full; at least 16 slots.
        let cap = (ids.len() * 2).next_power_of_two().max(16);
        let mut ix = KeyIndex {
            slots: vec![EMPTY; cap],
            shift: 64 - cap.trailing_zeros(),
        };
        let mask = cap - 1;
        for id in ids {
            let k = key(id);
            let mut s = ix.first_slot(k);
            loop {
                match ix.slots[s] {
                    EMPTY => {
                        ix.slots[s] = id;
                        break;
                    }
                    other if key(other) == k => return Err(id),
                    _ => s = (s + 1) & mask,
                }
            }
        }
        Ok(ix)
    }

    fn first_slot(&self, k: &[u8]) -> usize {
        (hash(k) >> self.shift) as usize
    }

    /// The id indexed under `k` (`key` must be the function the index was built with).
    pub(crate) fn get<'k>(&self, k: &[u8], key: impl Fn(u32) -> &'k [u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut s = self.first_slot(k);
        loop {
            match self.slots[s] {
                EMPTY => return None,
                id if key(id) == k => return Some(id),
                _ => s = (s + 1) & mask,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys: Vec<String> = (0..5000u32)
            .map(|i| format!("▁p{}{}", i * 7919 % 10007, "x".repeat((i % 13) as usize)))
            .chain([
                "".to_string(),
                "a".into(),
                "ab".into(),
                "abcdefgh".into(),
                "abcdefghi".into(),
            ])
            .collect();
        let want: HashMap<&str, u32> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i as u32))
            .collect();
        assert_eq!(want.len(), keys.len(), "test keys are distinct");
        let key = |id: u32| keys[id as usize].as_bytes();
        let ix = KeyIndex::build(0..keys.len() as u32, key).expect("no duplicates");
        for (k, &id) in &want {
            assert_eq!(ix.get(k.as_bytes(), key), Some(id), "{k:?}");
        }
        for miss in ["b", "abc", "abcdefghij", "▁p", "zz"] {
            assert_eq!(ix.get(miss.as_bytes(), key), None, "{miss:?}");
        }
        assert_eq!(KeyIndex::default().get(b"a", key), None);
    }

    #[test]
    fn reports_the_second_of_two_equal_keys() {
        let keys = ["x", "y", "x"];
        let r = KeyIndex::build(0..3, |id| keys[id as usize].as_bytes());
        assert_eq!(r.err(), Some(2));
    }
}

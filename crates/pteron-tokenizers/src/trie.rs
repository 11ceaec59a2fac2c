//! A small byte trie used for Unigram common-prefix search.

#[derive(Debug, Default)]
pub(crate) struct Trie {
    // children[node] sorted by byte
    children: Vec<Vec<(u8, u32)>>,
    values: Vec<Option<u32>>,
}

impl Trie {
    pub(crate) fn new() -> Self {
        Trie {
            children: vec![Vec::new()],
            values: vec![None],
        }
    }

    pub(crate) fn insert(&mut self, key: &[u8], value: u32) {
        let mut node = 0usize;
        for &b in key {
            let next = match self.children[node].binary_search_by_key(&b, |&(k, _)| k) {
                Ok(i) => self.children[node][i].1 as usize,
                Err(i) => {
                    let id = self.values.len();
                    self.children.push(Vec::new());
                    self.values.push(None);
                    self.children[node].insert(i, (b, id as u32));
                    id
                }
            };
            node = next;
        }
        self.values[node] = Some(value);
    }

    /// Calls `f(len, value)` for every key that is a prefix of `text`, shortest first.
    pub(crate) fn common_prefixes(&self, text: &[u8], mut f: impl FnMut(usize, u32)) {
        let mut node = 0usize;
        for (i, &b) in text.iter().enumerate() {
            match self.children[node].binary_search_by_key(&b, |&(k, _)| k) {
                Ok(j) => node = self.children[node][j].1 as usize,
                Err(_) => return,
            }
            if let Some(v) = self.values[node] {
                f(i + 1, v);
            }
        }
    }
}

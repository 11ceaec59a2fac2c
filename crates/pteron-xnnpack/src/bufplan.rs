//! Activation buffer sharing inside a delegate.
//!
//! Every run-time value owns a buffer sized at load. Without sharing, a network's
//! activations take the sum of all their sizes (mobilenet_v2: ~25 MiB), which with the
//! weights no longer fits in the last-level cache, so every layer writes cold memory.
//! [`plan`] lets a step's output take over the buffer of a value whose last reader
//! has already run (best fit by length). At run time the delegate swaps the two
//! `Vec` headers before the step (no copy, no allocation) and swaps them back in
//! reverse order after the last step, so between runs every buffer is home again.

/// Which value lends its buffer to each step's output.
///
/// * `reads[s]`: values step `s` reads;
/// * `writes[s]`: the value step `s` writes, `None` for steps left out of the plan;
/// * `lens[v]`: length of the buffer value `v` owns at load (0: none);
/// * `shareable[v]`: `v`'s buffer may be lent after its last read and `v` may take
///   over another one (false for constants, external outputs and values some step
///   accesses outside `reads`/`writes`).
///
/// Returns per step `Some(d)`: before step `s` runs, swap the buffers of slots `d` and
/// `writes[s]` (the latter's own buffer is not needed; `d`'s slot holds a buffer at
/// least `lens[writes[s]]` long that no later step reads through `d`).
pub(crate) fn plan(
    reads: &[Vec<usize>],
    writes: &[Option<usize>],
    lens: &[usize],
    shareable: &[bool],
) -> Vec<Option<usize>> {
    let nv = lens.len();
    let mut last = vec![None; nv];
    for (s, r) in reads.iter().enumerate() {
        for &v in r {
            last[v] = Some(s);
        }
    }
    // Length of the buffer slot v holds while the plan runs.
    let mut held = lens.to_vec();
    let mut pool: Vec<usize> = Vec::new();
    let mut borrow = vec![None; writes.len()];
    for (s, w) in writes.iter().enumerate() {
        let out = w.filter(|&o| shareable[o]);
        if let Some(o) = out {
            let need = lens[o];
            let best = pool
                .iter()
                .enumerate()
                .filter(|&(_, &d)| held[d] >= need)
                .min_by_key(|&(_, &d)| held[d])
                .map(|(k, _)| k);
            if let Some(k) = best {
                let d = pool.swap_remove(k);
                borrow[s] = Some(d);
                held[o] = held[d];
                held[d] = 0;
            }
        }
        for &v in &reads[s] {
            if shareable[v] && last[v] == Some(s) && held[v] > 0 && !pool.contains(&v) {
                pool.push(v);
            }
        }
        if let Some(o) = out {
            if last[o].is_none() && held[o] > 0 {
                pool.push(o);
            }
        }
    }
    borrow
}

#[cfg(test)]
mod tests {
    use super::plan;

    /// Replays a plan on real buffers: every step writes `s + 1` over its output and
    /// checks its inputs still hold what their producers wrote; then checks that
    /// undoing the swaps puts every buffer home.
    fn replay(
        reads: &[Vec<usize>],
        writes: &[Option<usize>],
        lens: &[usize],
        shareable: &[bool],
    ) -> usize {
        let borrow = plan(reads, writes, lens, shareable);
        let mut bufs: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(v, &n)| vec![-(v as f32); n])
            .collect();
        for (s, b) in borrow.iter().enumerate() {
            if b.is_some() {
                bufs[writes[s].unwrap()] = Vec::new();
            }
        }
        let home: Vec<*const f32> = bufs.iter().map(|b| b.as_ptr()).collect();
        let mut wrote = vec![None; lens.len()];
        for (s, w) in writes.iter().enumerate() {
            if let Some(d) = borrow[s] {
                bufs.swap(d, w.unwrap());
            }
            for &v in &reads[s] {
                let want = wrote[v].unwrap_or(-(v as f32));
                assert!(
                    bufs[v][..lens[v]].iter().all(|&x| x == want),
                    "step {s} input {v}"
                );
            }
            if let Some(o) = w {
                assert!(bufs[*o].len() >= lens[*o], "step {s} output too short");
                bufs[*o][..lens[*o]].fill(s as f32 + 1.0);
                wrote[*o] = Some(s as f32 + 1.0);
            }
        }
        for (s, w) in writes.iter().enumerate().rev() {
            if let Some(d) = borrow[s] {
                bufs.swap(d, w.unwrap());
            }
        }
        let back: Vec<*const f32> = bufs.iter().map(|b| b.as_ptr()).collect();
        assert_eq!(home, back, "buffers not restored");
        borrow.iter().filter(|b| b.is_some()).count()
    }

    #[test]
    fn chain_reuses_dead_buffers() {
        // x0 -> v1 -> v2 -> v3 -> v4 (output), plus a residual add reading v1 and v3.
        let reads = vec![vec![0], vec![1], vec![2], vec![1, 3], vec![4]];
        let writes = vec![Some(1), Some(2), Some(3), Some(4), Some(5)];
        let lens = [8, 8, 4, 8, 8, 8];
        let shareable = [true, true, true, true, true, false];
        // v2 (step 1) takes x0's buffer; v3 finds nothing free (v1 is still read at
        // step 3), v4 gets the slot v2 frees; the external output v5 keeps its own.
        assert_eq!(
            plan(&reads, &writes, &lens, &shareable),
            vec![None, Some(0), None, Some(2), None]
        );
        assert_eq!(replay(&reads, &writes, &lens, &shareable), 2);
    }

    #[test]
    fn never_lends_live_or_unshareable_buffers() {
        // Diamond: v1 read by steps 1 and 2; a constant (v6) and a left-out step.
        let reads = vec![vec![0, 6], vec![1], vec![1, 2], vec![3], vec![4, 6]];
        let writes = vec![Some(1), Some(2), Some(3), None, Some(5)];
        let lens = [16, 16, 16, 16, 16, 16, 16];
        let shareable = [true, true, true, true, false, true, false];
        replay(&reads, &writes, &lens, &shareable);
        // Best fit: the smallest free buffer that is long enough (v3 is never read, so
        // free right after step 1; v0 is too short for step 2's output).
        let reads = vec![vec![0], vec![1], vec![2], vec![]];
        let writes = vec![Some(2), Some(3), Some(4), Some(5)];
        let lens = [4, 32, 8, 8, 8, 4];
        let shareable = [true; 6];
        let b = plan(&reads, &writes, &lens, &shareable);
        assert_eq!(b, vec![None, None, Some(3), Some(0)]);
        replay(&reads, &writes, &lens, &shareable);
    }
}

//! Data runs ("mapping pairs"): where a non-resident attribute's clusters
//! are. Decoded here rather than by the ntfs crate, which reads a run at
//! cluster 0 (the boot sector's) as sparse.

/// One run of clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First virtual cluster (position in the attribute).
    pub vcn: u64,
    /// First logical cluster on the volume; `None` for a sparse run.
    pub lcn: Option<u64>,
    /// Length in clusters.
    pub len: u64,
}

/// Decodes mapping pairs, starting at virtual cluster `lowest_vcn`.
pub struct Runs<'a> {
    bytes: &'a [u8],
    pos: usize,
    vcn: u64,
    lcn: i64,
    done: bool,
}

/// A malformed mapping pair, at byte `at` of the mapping pairs array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRun {
    /// Offset of the pair's header byte.
    pub at: usize,
    /// What is wrong.
    pub problem: &'static str,
}

impl<'a> Runs<'a> {
    /// Runs of the mapping pairs in `bytes`.
    pub fn new(bytes: &'a [u8], lowest_vcn: u64) -> Self {
        Runs {
            bytes,
            pos: 0,
            vcn: lowest_vcn,
            lcn: 0,
            done: false,
        }
    }

    fn field(&self, at: usize, size: usize) -> Option<[u8; 8]> {
        let b = self.bytes.get(at..at + size)?;
        // Sign-extend from the top byte; callers that want unsigned values
        // check the sign.
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xFF
        } else {
            0
        };
        let mut v = [fill; 8];
        v[..size].copy_from_slice(b);
        Some(v)
    }

    fn next_run(&mut self) -> Result<Option<Run>, BadRun> {
        let at = self.pos;
        let bad = |problem| BadRun { at, problem };
        let Some(&h) = self.bytes.get(at) else {
            return Err(bad("the mapping pairs have no end marker"));
        };
        if h == 0 {
            return Ok(None);
        }
        let (len_size, off_size) = (usize::from(h & 0x0F), usize::from(h >> 4));
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(bad("invalid field sizes in a mapping pair header"));
        }
        let len = self
            .field(at + 1, len_size)
            .ok_or(bad("a mapping pair runs past the attribute"))?;
        let len = i64::from_le_bytes(len);
        if len <= 0 {
            return Err(bad("a run has a zero or negative length"));
        }
        let len = len as u64;
        let lcn = if off_size == 0 {
            None
        } else {
            let delta = self
                .field(at + 1 + len_size, off_size)
                .ok_or(bad("a mapping pair runs past the attribute"))?;
            let lcn = self
                .lcn
                .checked_add(i64::from_le_bytes(delta))
                .filter(|&l| l >= 0)
                .ok_or(bad("a run starts before cluster 0"))?;
            self.lcn = lcn;
            Some(lcn as u64)
        };
        let run = Run {
            vcn: self.vcn,
            lcn,
            len,
        };
        self.vcn = self
            .vcn
            .checked_add(len)
            .ok_or(bad("the runs overflow the cluster numbers"))?;
        self.pos = at + 1 + len_size + off_size;
        Ok(Some(run))
    }
}

impl Iterator for Runs<'_> {
    type Item = Result<Run, BadRun>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_run();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Result<Vec<Run>, BadRun> {
        Runs::new(b, 0).collect()
    }

    #[test]
    fn a_run_at_cluster_zero_is_not_sparse() {
        // $Boot as mkntfs writes it: 2 clusters at LCN 0.
        assert_eq!(
            decode(&[0x11, 0x02, 0x00, 0x00]).unwrap(),
            vec![Run {
                vcn: 0,
                lcn: Some(0),
                len: 2
            }]
        );
    }

    #[test]
    fn deltas_sparse_runs_and_negative_offsets() {
        // 0x30 clusters at 0x1000, 0x10 sparse, 8 at 0x1000 - 0x100.
        let b = [
            0x21, 0x30, 0x00, 0x10, 0x01, 0x10, 0x21, 0x08, 0x00, 0xFF, 0x00,
        ];
        assert_eq!(
            decode(&b).unwrap(),
            vec![
                Run {
                    vcn: 0,
                    lcn: Some(0x1000),
                    len: 0x30
                },
                Run {
                    vcn: 0x30,
                    lcn: None,
                    len: 0x10
                },
                Run {
                    vcn: 0x40,
                    lcn: Some(0xF00),
                    len: 8
                },
            ]
        );
    }

    #[test]
    fn malformed_pairs_are_errors_with_their_offset() {
        for (b, at, problem) in [
            (
                &[0x11, 0x02][..],
                0,
                "a mapping pair runs past the attribute",
            ),
            (
                &[0x11, 0x02, 0x05][..],
                3,
                "the mapping pairs have no end marker",
            ),
            (
                &[0x10, 0x02, 0x00][..],
                0,
                "invalid field sizes in a mapping pair header",
            ),
            (
                &[0x11, 0x00, 0x05, 0x00][..],
                0,
                "a run has a zero or negative length",
            ),
            (
                &[0x11, 0x01, 0x05, 0x11, 0x01, 0xF0, 0][..],
                3,
                "a run starts before cluster 0",
            ),
        ] {
            assert_eq!(decode(b), Err(BadRun { at, problem }), "{b:x?}");
        }
    }
}

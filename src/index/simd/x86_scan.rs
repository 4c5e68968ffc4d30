//! The x86_64 scan, stamped out once per instruction set (the features must be known
//! at compile time for the intrinsics to inline); each module brings its own
//! `row_sums::<G>(q, query, row) -> __m256i`, eight i32 partial sums whose total is
//! `dot4(query, row)`, from each group's `group_operands` (with `G > 0` the query's two
//! halves of each group from registers, `q`, else from `query`).

macro_rules! x86_scan {
    ($features:literal) => {
        /// Rows reduced together by the `vphaddd` tree.
        const ROWS: usize = 8;

        #[target_feature(enable = $features)]
        pub(super) fn coarse_uppers(pass: CoarseScan<'_>, out: CoarseOut<'_>) -> f32 {
            // The common embedding sizes get a kernel with the query in registers and
            // the groups unrolled (128-d: dlib, FaceNet; 512-d: ArcFace-style models); 0
            // reads the query from memory (any size).
            match pass.query.len() / GROUP_DIMS {
                1 => scan::<1>(pass, out),
                2 => scan::<2>(pass, out),
                3 => scan::<3>(pass, out),
                4 => scan::<4>(pass, out),
                8 => scan::<8>(pass, out),
                _ => scan::<0>(pass, out),
            }
        }

        /// `G` groups of 64 dimensions per row (32 bytes each); `G == 0`: any number.
        #[target_feature(enable = $features)]
        fn scan<const G: usize>(pass: CoarseScan<'_>, mut out: CoarseOut<'_>) -> f32 {
            let (query, rows, terms) = (pass.query, pass.rows, pass.terms);
            // A constant for the fixed sizes, so that the loops below unroll.
            let row_bytes = if G > 0 { 32 * G } else { query.len() / 2 };
            let n = pass.start(&mut out, row_bytes);
            if row_bytes == 0 || query.len() != 2 * row_bytes {
                return f32::NEG_INFINITY;
            }
            let mut q = [[_mm256_setzero_si256(); 2]; G];
            for (halves, bytes) in q.iter_mut().zip(query.chunks_exact(GROUP_DIMS)) {
                let bytes = bytemuck::cast_slice::<i8, u8>(bytes);
                halves[0] = bytemuck::pod_read_unaligned(&bytes[..32]);
                halves[1] = bytemuck::pod_read_unaligned(&bytes[32..]);
            }
            let whole = n / ROWS * ROWS;
            let bias = _mm256_set1_epi32(terms.bias);
            let scale = _mm256_set1_ps(terms.scale);
            let lift = _mm256_set1_ps(terms.lift);
            let grow = _mm256_set1_ps(terms.grow);
            let floor_v = _mm256_set1_ps(pass.floor);
            let mut lowers = _mm256_set1_ps(f32::NEG_INFINITY);
            let blocks = rows.codes[..whole * row_bytes]
                .chunks_exact(ROWS * row_bytes)
                .zip(out.uppers[..whole].chunks_exact_mut(ROWS));
            for (b, (block, uppers)) in blocks.enumerate() {
                let mut sums = [_mm256_setzero_si256(); ROWS];
                for (sum, row) in sums.iter_mut().zip(block.chunks_exact(row_bytes)) {
                    *sum = row_sums::<G>(&q, query, row);
                }
                let first = b * ROWS;
                let dots = _mm256_cvtepi32_ps(_mm256_sub_epi32(reduce8(&sums), bias));
                let row_scales: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(
                    &rows.scales[first..][..ROWS],
                ));
                let row_errors: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(
                    &rows.errors[first..][..ROWS],
                ));
                // The order of `BoundTerms::upper` / `lower`: (dot * (scale * s)) +/- lift,
                // then +/- grow * e.
                let approx = _mm256_mul_ps(dots, _mm256_mul_ps(scale, row_scales));
                let margin = _mm256_mul_ps(grow, row_errors);
                let bounds = _mm256_add_ps(_mm256_add_ps(approx, lift), margin);
                lowers = _mm256_max_ps(lowers, _mm256_sub_ps(_mm256_sub_ps(approx, lift), margin));
                uppers.copy_from_slice(&bytemuck::cast::<__m256, [f32; ROWS]>(bounds));
                let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(bounds, floor_v));
                // ROWS divides 64: the eight bits never straddle two words.
                out.above[first / 64] |= u64::from(mask as u8) << (first % 64);
            }
            let mut best_lower = bytemuck::cast::<__m256, [f32; ROWS]>(lowers)
                .into_iter()
                .fold(f32::NEG_INFINITY, f32::max);
            for i in whole..n {
                let row = &rows.codes[i * row_bytes..][..row_bytes];
                let sums = bytemuck::cast::<__m256i, [i32; 8]>(row_sums::<G>(&q, query, row));
                best_lower = best_lower.max(pass.bound_row(i, sums.iter().sum(), &mut out));
            }
            best_lower
        }

        /// Lane i of the result is the sum of the eight lanes of `sums[i]`.
        #[target_feature(enable = $features)]
        #[inline]
        fn reduce8(sums: &[__m256i; ROWS]) -> __m256i {
            let h01 = _mm256_hadd_epi32(sums[0], sums[1]);
            let h23 = _mm256_hadd_epi32(sums[2], sums[3]);
            let h45 = _mm256_hadd_epi32(sums[4], sums[5]);
            let h67 = _mm256_hadd_epi32(sums[6], sums[7]);
            // Per 128-bit half: [r0 r1 r2 r3] and [r4 r5 r6 r7] partial sums.
            let h0123 = _mm256_hadd_epi32(h01, h23);
            let h4567 = _mm256_hadd_epi32(h45, h67);
            let low_halves = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
            let high_halves = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
            _mm256_add_epi32(low_halves, high_halves)
        }

        /// Group `g` of a row as the two products it takes: its low nibbles (bytes
        /// 0..=15) with the query codes they meet, and its high nibbles with theirs.
        #[target_feature(enable = $features)]
        #[inline]
        fn group_operands<const G: usize>(
            q: &[[__m256i; 2]; G],
            query: &[i8],
            row: &[u8],
            g: usize,
        ) -> [(__m256i, __m256i); 2] {
            let low = _mm256_set1_epi8(0x0F);
            let packed: __m256i = bytemuck::pod_read_unaligned(&row[32 * g..][..32]);
            let (q_low, q_high) = query_halves::<G>(q, query, g);
            [
                (_mm256_and_si256(packed, low), q_low),
                (
                    _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low),
                    q_high,
                ),
            ]
        }

        /// The query's codes of group `g` (its two 32-byte halves), from registers when
        /// the size is fixed.
        #[target_feature(enable = $features)]
        #[inline]
        fn query_halves<const G: usize>(
            q: &[[__m256i; 2]; G],
            query: &[i8],
            g: usize,
        ) -> (__m256i, __m256i) {
            if G > 0 {
                (q[g][0], q[g][1])
            } else {
                let bytes = bytemuck::cast_slice::<i8, u8>(&query[GROUP_DIMS * g..][..64]);
                (
                    bytemuck::pod_read_unaligned(&bytes[..32]),
                    bytemuck::pod_read_unaligned(&bytes[32..]),
                )
            }
        }
    };
}

//! Intel AMX (Advanced Matrix Extensions) for the bf16 and int8 products of `quant`.
//!
//! AMX adds eight tile registers of up to 16 rows x 64 bytes and one instruction that multiplies
//! two tiles into a third: `tdpbf16ps` (16 x 32 bf16 by 32 x 16 bf16 into 16 x 16 f32) and
//! `tdpbssd` (16 x 64 i8 by 64 x 16 i8 into 16 x 16 i32), 8192 or 16384 multiply-adds each, where
//! one AVX-512 instruction does 32 or 64. `quant`'s packed weights are already in the layout the
//! right-hand tile wants (pairs of bf16 or quads of bytes per column, 16 columns in a 64-byte row),
//! so a block of 16 output columns is read straight from the packed weight.
//!
//! The rest of the product is unchanged: activations converted per row as before, the int8 sums
//! exact in i32 per group of 64 inputs (one tile step) and added in f32 in the same order with
//! the same roundings, so int8 results are bit-identical to the VNNI and portable kernels; bf16
//! sums differ from `vdpbf16ps`'s only in the order of f32 additions.
//!
//! Stable Rust has no AMX intrinsics (`x86_amx_intrinsics` is unstable), so the few instructions
//! are written as inline assembly, tile numbers as `const` operands. The OS must grant a process
//! the tile state (Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`]
//! asks once and reports false where the CPU, the OS or the hypervisor says no.

#[cfg(target_arch = "x86_64")]
pub use imp::*;

/// Rows (and 4-byte columns) of every tile: all eight are configured as 16 x 64 bytes.
pub const TILE: usize = 16;

#[cfg(not(target_arch = "x86_64"))]
pub fn available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::TILE;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// Whether this process can use AMX-BF16 and AMX-INT8 tiles (CPU, OS and permission), asked
    /// once.
    pub fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(detect)
    }

    fn detect() -> bool {
        // Leaf 7 only where leaf 0 says it exists.
        if __cpuid(0).eax < 7 {
            return false;
        }
        let leaf7 = __cpuid_count(7, 0);
        let (tile, bf16, int8) = (leaf7.edx >> 24 & 1 == 1, leaf7.edx >> 22 & 1 == 1, leaf7.edx >> 25 & 1 == 1);
        let osxsave = __cpuid(1).ecx >> 27 & 1 == 1;
        if !(tile && bf16 && int8 && osxsave) {
            return false;
        }
        // The OS enables the tile configuration and data state in XCR0 (bits 17 and 18).
        // SAFETY: XGETBV is available when OSXSAVE is set (checked above).
        let xcr0 = unsafe { _xgetbv(0) };
        if xcr0 & (0b11 << 17) != 0b11 << 17 {
            return false;
        }
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bf16"))
        {
            return false;
        }
        request_permission()
    }

    #[cfg(target_os = "linux")]
    fn request_permission() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments; it changes only whether this process
        // may use the tile data state.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_permission() -> bool {
        false
    }

    #[repr(C, align(64))]
    struct Config([u8; 64]);

    /// Loads the tile configuration (palette 1, eight tiles of 16 rows x 64 bytes) on this thread.
    ///
    /// # Safety
    /// [`available`] must have returned true.
    unsafe fn configure() {
        let mut c = Config([0; 64]);
        c.0[0] = 1;
        for t in 0..8 {
            c.0[16 + 2 * t] = 64;
            c.0[48 + t] = TILE as u8;
        }
        asm!("ldtilecfg [{}]", in(reg) c.0.as_ptr(), options(nostack, readonly, preserves_flags));
    }

    /// Gives the tile state back, so that a context switch need not save it.
    unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }

    #[inline(always)]
    unsafe fn zero<const T: u8>() {
        asm!("tilezero tmm{t}", t = const T, options(nostack, nomem, preserves_flags));
    }

    /// Loads 16 rows of 64 bytes from `p`, `stride` bytes apart.
    #[inline(always)]
    unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
        asm!("tileloadd tmm{t}, [{p} + {s}*1]", t = const T, p = in(reg) p, s = in(reg) stride,
            options(nostack, readonly, preserves_flags));
    }

    #[inline(always)]
    unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
        asm!("tilestored [{p} + {s}*1], tmm{t}", t = const T, p = in(reg) p, s = in(reg) stride,
            options(nostack, preserves_flags));
    }

    #[inline(always)]
    unsafe fn dpbf16<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nostack, nomem, preserves_flags));
    }

    /// The left-hand operand: `rows` rows of `lda` bytes (a multiple of 64) in the layout of
    /// [`tile_rows`], whole 16-row tiles (the rows past `rows` zero).
    pub struct Lhs {
        pub a: *const u8,
        pub lda: usize,
        pub rows: usize,
    }

    /// Where the product goes: `dst` row `r`, column `col - c0` for output column `col` in
    /// `c0..c1`, rows `dst_rs` floats apart.
    pub struct Out {
        pub dst: *mut f32,
        pub dst_rs: usize,
        pub c0: usize,
        pub c1: usize,
    }

    /// Rearranges row-major rows (`lda` bytes each, a multiple of 64; a whole number of 16-row
    /// tiles) into the layout the kernels read: rows in 16-row tiles from `r0 · lda` as before,
    /// but within a tile step `p`'s 64 bytes of row `i` at `p · 1024 + i · 64`, so that each tile
    /// an AMX step loads is 1 KiB in one piece (consecutive lines) instead of sixteen rows `lda`
    /// apart. (Done a tile at a time after the rows are converted: writing each converted row
    /// straight into its pieces measured slower, 0.9 against 1.4 TFLOP/s for bf16 2048x384x1536.)
    pub fn tile_rows(a: &mut [u8], lda: usize, tmp: &mut Vec<u8>) {
        debug_assert!(lda.is_multiple_of(64) && a.len().is_multiple_of(TILE * lda));
        let steps = lda / 64;
        for region in a.chunks_exact_mut(TILE * lda) {
            tmp.clear();
            tmp.extend_from_slice(region);
            for i in 0..TILE {
                for p in 0..steps {
                    region[p * 1024 + i * 64..][..64].copy_from_slice(&tmp[i * lda + p * 64..][..64]);
                }
            }
        }
    }

    /// Rows per chunk: a chunk's activations (`ROW_CHUNK x k`) are read once per pair of column
    /// blocks, so they should stay in L2.
    const ROW_CHUNK: usize = 128;

    /// Copies the valid part of a 16 x 16 f32 tile (`tile`, from output row `r0`, column block
    /// `cb`) into `out`.
    #[inline(always)]
    unsafe fn copy_out(tile: &[f32; 256], out: &Out, rows: usize, r0: usize, cb: usize) {
        let col = cb * TILE;
        if r0 >= rows || col >= out.c1 {
            return;
        }
        let width = TILE.min(out.c1 - col);
        for i in 0..TILE.min(rows - r0) {
            std::ptr::copy_nonoverlapping(
                tile[i * TILE..].as_ptr(),
                out.dst.add((r0 + i) * out.dst_rs + col - out.c0),
                width,
            );
        }
    }

    /// `out = A · B` in bf16 with f32 sums: `A` the rounded activations (`lhs`, `2 · k2` values per
    /// row), `B` a `Bf16Weights` packing (`[block][k2][16][2]`, `k2` a multiple of 16), column
    /// blocks `b0..b1`. `done(a, b)` is called as rows `a..b` are finished (every column), in
    /// order, a chunk of 128 at a time: the caller's epilogue then finds them in cache. (Column
    /// pairs outside, row pairs inside: each pair of weight blocks is read once per chunk, which
    /// measured faster than the other way round.)
    ///
    /// # Safety
    /// [`available`] must be true; `lhs` and `out` as their docs say; `b` must hold blocks
    /// `b0..b1` of `k2 · 32` values each from its start (block `b0` first).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn bf16_matmul(
        lhs: &Lhs,
        b: *const u16,
        k2: usize,
        b0: usize,
        b1: usize,
        out: &Out,
        done: &mut dyn FnMut(usize, usize),
    ) {
        debug_assert!(k2.is_multiple_of(TILE));
        configure();
        let mut buf = Tiles([[0f32; 256]; 4]);
        let block_bytes = k2 * 64;
        let b = b as *const u8;
        for chunk in (0..lhs.rows).step_by(ROW_CHUNK) {
            let chunk_end = (chunk + ROW_CHUNK).min(lhs.rows);
            for cb in (b0..b1).step_by(2) {
                let two_c = cb + 1 < b1;
                let b_lo = b.add((cb - b0) * block_bytes);
                let b_hi = b_lo.add(block_bytes);
                for r0 in (chunk..chunk_end).step_by(2 * TILE) {
                    let two_r = r0 + TILE < chunk_end;
                    let a_lo = lhs.a.add(r0 * lhs.lda);
                    let a_hi = a_lo.add(TILE * lhs.lda);
                    zero::<0>();
                    zero::<1>();
                    zero::<2>();
                    zero::<3>();
                    for p in (0..k2).step_by(TILE) {
                        // 16 pairs = 64 bytes of each A row (one 1 KiB piece, `tile_rows`);
                        // 16 rows of 64 bytes of B.
                        load::<4>(a_lo.add(p * 64), 64);
                        load::<6>(b_lo.add(p * 64), 64);
                        dpbf16::<0, 4, 6>();
                        if two_c {
                            load::<7>(b_hi.add(p * 64), 64);
                            dpbf16::<1, 4, 7>();
                        }
                        if two_r {
                            load::<5>(a_hi.add(p * 64), 64);
                            dpbf16::<2, 5, 6>();
                            if two_c {
                                dpbf16::<3, 5, 7>();
                            }
                        }
                    }
                    // A whole tile goes straight to `dst`; a cut one through `buf`.
                    macro_rules! put {
                        ($t:literal, $row:expr, $cb:expr) => {
                            let (row, cb) = ($row, $cb);
                            if row + TILE <= lhs.rows && (cb + 1) * TILE <= out.c1 {
                                let at = out.dst.add(row * out.dst_rs + cb * TILE - out.c0);
                                store::<$t>(at as *mut u8, out.dst_rs * 4);
                            } else {
                                store::<$t>(buf.0[$t].as_mut_ptr() as *mut u8, 64);
                                copy_out(&buf.0[$t], out, lhs.rows, row, cb);
                            }
                        };
                    }
                    put!(0, r0, cb);
                    if two_c {
                        put!(1, r0, cb + 1);
                    }
                    if two_r {
                        put!(2, r0 + TILE, cb);
                        if two_c {
                            put!(3, r0 + TILE, cb + 1);
                        }
                    }
                }
            }
            done(chunk, chunk_end);
        }
        release();
    }

    #[repr(C, align(64))]
    struct Tiles<T>(T);

    /// The int8 operands' scales (see `quant::Int8Weights`): per row and group of 64 inputs
    /// `scales[row * groups + g]`, per column `scale[col]` (from the first column of block `b0`).
    pub struct Int8Scales {
        pub scales: *const f32,
        pub groups: usize,
        pub scale: *const f32,
    }

    /// `out[i][j] = s_w[j] · Σ_g s_x[i][g] · Σ_{p in g} a[i][p] · b[p][j]` with signed bytes on
    /// both sides (`tdpbssd`): each group of 64 inputs is one tile step, its exact i32 sum added
    /// in f32 by one fused multiply-add, groups in order, then the product by the weight scale: the
    /// same arithmetic, in the same order, as `quant`'s other int8 kernels (theirs take unsigned
    /// activations offset by 128 and take the offset off again, which gives the same i32 sums).
    /// `b` is an `Int8Weights` packing (`[block][k4][16][4]`, `k4` a multiple of 16), `lhs` the
    /// activations as signed bytes.
    ///
    /// One 16 x 16 output tile at a time, its f32 sums in sixteen vector registers: the group
    /// after next is multiplied into one tile register while the last one's sums are stored and
    /// added in (two result, two activation and two weight tiles, used in turn), so that the tile
    /// unit and the vector units work at once.
    ///
    /// # Safety
    /// As [`bf16_matmul`], `b` holding `k4 · 64` bytes per block; `scales` must describe the
    /// rows of `lhs` (padded rows included) and the columns of blocks `b0..b1`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn int8_matmul(
        lhs: &Lhs,
        b: *const i8,
        k4: usize,
        b0: usize,
        b1: usize,
        s: &Int8Scales,
        out: &Out,
        done: &mut dyn FnMut(usize, usize),
    ) {
        debug_assert!(k4.is_multiple_of(TILE) && k4 / TILE == s.groups && s.groups > 0);
        configure();
        let mut sums = Tiles([[0i32; 256]; 2]);
        let block_bytes = k4 * 64;
        let b = b as *const u8;
        let groups = s.groups;
        for chunk in (0..lhs.rows).step_by(ROW_CHUNK) {
            let chunk_end = (chunk + ROW_CHUNK).min(lhs.rows);
            for r0 in (chunk..chunk_end).step_by(TILE) {
                for cb in b0..b1 {
                    let bp = b.add((cb - b0) * block_bytes);
                    let col = (cb - b0) * TILE;
                    let ap = lhs.a.add(r0 * lhs.lda);
                    let scales = s.scales.add(r0 * groups);
                    let mut acc = [_mm512_setzero_ps(); TILE];
                    // Group g goes to tiles (0, 4, 6) when even, (1, 5, 7) when odd; the next group
                    // is issued before this one's sums are read.
                    issue::<0, 4, 6>(ap, bp, 0);
                    for g in 0..groups {
                        let next = g + 1 < groups;
                        let (sums, scales) = (&mut sums.0[g % 2], scales.add(g));
                        if g % 2 == 0 {
                            if next {
                                issue::<1, 5, 7>(ap, bp, g + 1);
                            }
                            store::<0>(sums.as_mut_ptr() as *mut u8, 64);
                        } else {
                            if next {
                                issue::<0, 4, 6>(ap, bp, g + 1);
                            }
                            store::<1>(sums.as_mut_ptr() as *mut u8, 64);
                        }
                        add_group(sums, &mut acc, scales, groups);
                    }
                    // The weight scales, then the valid rows and columns into `dst`.
                    let w = _mm512_loadu_ps(s.scale.add(col));
                    let global = cb * TILE;
                    if global >= out.c1 {
                        continue;
                    }
                    let width = TILE.min(out.c1 - global);
                    let mask: __mmask16 = if width == TILE { !0 } else { (1u16 << width) - 1 };
                    let dst = out.dst.add(global - out.c0);
                    for (i, v) in acc.iter().enumerate().take(TILE.min(lhs.rows - r0)) {
                        _mm512_mask_storeu_ps(dst.add((r0 + i) * out.dst_rs), mask, _mm512_mul_ps(*v, w));
                    }
                }
                done(r0, (r0 + TILE).min(chunk_end));
            }
        }
        release();
    }

    /// Zeroes tile `C` and multiplies group `g` of the activations (`ap`, a 16-row tile laid out
    /// by [`tile_rows`]) by group `g` of a packed weight block (`bp`) into it, through tiles `A`
    /// and `B`.
    #[inline(always)]
    unsafe fn issue<const C: u8, const A: u8, const B: u8>(ap: *const u8, bp: *const u8, g: usize) {
        zero::<C>();
        load::<A>(ap.add(g * 1024), 64);
        load::<B>(bp.add(g * 1024), 64);
        dpbssd::<C, A, B>();
    }

    #[inline(always)]
    unsafe fn dpbssd<const C: u8, const A: u8, const B: u8>() {
        asm!("tdpbssd tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nostack, nomem, preserves_flags));
    }

    /// `acc[i] += sums[i] · scale[i]` for the 16 rows of a tile, `scale[i]` at `scales + i · groups`.
    #[inline(always)]
    unsafe fn add_group(sums: &[i32; 256], acc: &mut [__m512; TILE], scales: *const f32, groups: usize) {
        for (i, a) in acc.iter_mut().enumerate() {
            let v = _mm512_cvtepi32_ps(_mm512_loadu_si512(sums[i * TILE..].as_ptr() as *const _));
            *a = _mm512_fmadd_ps(v, _mm512_set1_ps(*scales.add(i * groups)), *a);
        }
    }
}

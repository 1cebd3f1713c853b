//! Bounds-checked strided single-precision GEMM on top of `matrixmultiply` (runtime AVX2/FMA dispatch).

/// A strided matrix view: element (i, j) is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A mutable strided matrix view with unit column stride.
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub off: usize,
    pub rs: usize,
}

fn last_index(off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    off + (rows - 1) * rs + (cols - 1) * cs
}

/// `C = A·B + beta·C` with A m×k, B k×n, C m×n.
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: MatMut<'_>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0, "sgemm with k = 0");
    assert!(
        last_index(a.off, m, k, a.rs, a.cs) < a.data.len(),
        "sgemm: A out of bounds"
    );
    assert!(
        last_index(b.off, k, n, b.rs, b.cs) < b.data.len(),
        "sgemm: B out of bounds"
    );
    assert!(
        last_index(c.off, m, n, c.rs, 1) < c.data.len(),
        "sgemm: C out of bounds"
    );
    let cast = |x: usize| x as isize;
    // SAFETY: every element the kernel touches lies inside the slices (checked above); A and B are
    // shared borrows and C an exclusive one, so they cannot alias.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr().add(a.off),
            cast(a.rs),
            cast(a.cs),
            b.data.as_ptr().add(b.off),
            cast(b.rs),
            cast(b.cs),
            beta,
            c.data.as_mut_ptr().add(c.off),
            cast(c.rs),
            1,
        );
    }
}

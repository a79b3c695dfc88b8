/* The shallow CNNs' trainer (training/shallow_cnn.py compiles and loads it): one network per fold of
 *   conv(3 -> C, 3x3, zero padding P) -> ReLU -> batch norm (batch statistics) -> max pool (3, stride 3, pad 1)
 *   -> dropout -> average pool (2, stride 2) -> fully connected (C x 25 -> K) -> softmax cross-entropy, Adam,
 * the network of STSTNet (C = 16: its three streams' 3 + 5 + 8 filters on the same input are one convolution
 * with 16 filters) and of the survey's net4.mat (C = 5, 'same' padding, zero-centred input).
 *
 * Why it is fast (training/shallow_cnn.py has the measurements):
 * - The mini-batches are the same every epoch (STSTNet: no shuffle; the survey: Shuffle 'once'), so each
 *   batch keeps, per filter, the moments of the centred input patches d(p) over the pixels where the
 *   filter's pre-activation z(p) = w . d(p) + b is positive: count, S1 = sum d, M2 = sum d d^T. A step
 *   updates them only where a pixel's ReLU mask flipped (about 0.03% of pixels a step on the real MEGC2019
 *   flows). From them come, exactly, the batch-norm statistics (sum ReLU(z) = w.S1 + b n+, sum ReLU(z)^2 =
 *   w^T M2 w + 2 b w.S1 + b^2 n+) and the dense part of the convolution's weight gradient (batch norm's
 *   mean and variance terms: S1 and S2 = M2 w + b S1), which otherwise costs two more passes over every
 *   pixel.
 * - Batch norm is a per-channel affine map after the ReLU, so max pooling commutes with it: the pooled
 *   value is scale * ReLU(max z) + shift (min z where the scale is negative); the head reads 100 pooled
 *   values a filter, not 900 (or 784) pixels, and the backward pass through the pooling is the pooled
 *   pixels' patches times their gradients (a quarter of the windows: dropout and the ReLU drop the rest).
 * - The one dense pass left is the convolution itself (register-blocked, AVX-512 where there is one), in
 *   float32; the moments are sums of exact products in float64.
 * Each fold is trained by one call, from its own initial weights and seed, so a fold's numbers do not depend
 * on which folds are trained beside it (threads in training/shallow_cnn.py). */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#define TAPS 27      /* 3 input channels x 3 x 3 */
#define TROW 32      /* a patch's 27 values padded to 32 (rows of M2) */
#define LANES 32     /* an output row: two vectors of 16 */
#define PQ 10        /* max-pooled side */
#define PQQ 100
#define AQ 5         /* average-pooled side */
#define AQQ 25
#define MAXC 16
#define MAXK 16
#define IN 28        /* input side */

typedef struct {
    int n_images;        /* images in the pool */
    int hp, wp;          /* padded rows, row stride (floats) */
    int pad;             /* convolution padding P: output side 28 + 2P - 2 */
    int channels;        /* C <= 16 */
    int classes;         /* K <= 16 */
    int steps;           /* epochs x batches per epoch */
    const float *images; /* n_images x 3 x hp x wp, zero padded (P rows above and columns left) */
    float lr, beta1, beta2, adam_eps;
    float weight_decay;  /* coupled L2 on conv weights, fc weights, BN scale and offset (not the biases) */
    float dropout;       /* probability of dropping; drawn as 16-bit uniforms (threshold dropout * 65536) */
    float bn_eps, bn_momentum;
} Spec;

typedef struct {
    int n_batches;             /* batches per epoch, the same every epoch */
    const int *batch_start;    /* n_batches + 1 offsets into batch_images */
    const int *batch_images;   /* pool indices */
    const int *batch_labels;   /* class indices */
    const float *mean_image;   /* 3 x hp x wp padded mean image subtracted from every input, or NULL */
    uint64_t seed;             /* the fold's dropout stream */
    float *params;             /* in/out: conv W (C x 27), conv b (C), BN scale (C), BN offset (C), fc W (K x 25C), fc b (K) */
    float *running;            /* out: running mean (C) and unbiased running variance (C), PyTorch's momentum */
    float *losses;             /* out: each step's mean loss (steps), or NULL */
    double *stats;             /* out: flips, pixels a step summed over steps (2), or NULL */
} Job;

/* ------------------------------------------------------------------------------------------ random numbers */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s[4]; } Rng;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next64(Rng *r) { /* xoshiro256** */
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

static void step_rng(Rng *r, uint64_t seed, uint64_t step) { /* one stream a (seed, step): steps independent */
    uint64_t x = seed ^ (step * 0xD1B54A32D192ED03ULL);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

/* keep[i] = 1 where element i survives dropout: 16-bit uniforms, 4 a draw, dropped below dropout * 65536.
 * Element order: (batch entry, channel, quadrant (pooled row % 2, column % 2), pooled row / 2, column / 2). */
void dropout_keep(uint64_t seed, uint64_t step, int count, float dropout, uint8_t *keep) {
    Rng r;
    step_rng(&r, seed, step);
    uint32_t threshold = (uint32_t)lrintf(dropout * 65536.0f);
    for (int i = 0; i < count; i += 4) {
        uint64_t bits = next64(&r);
        for (int j = 0; j < 4 && i + j < count; j++) keep[i + j] = ((bits >> (16 * j)) & 0xFFFF) >= threshold;
    }
}

/* ------------------------------------------------------------------------------------------ the convolution */
/* z[k][y][0..31] (k < cb) for output rows 0..side-1 of one image: offset (per pixel, or NULL: the bias) plus
 * the filters' sum over the 27 taps, in tap order (ch, dy, dx), fused multiply-adds; taps on padding rows
 * are skipped (they add zeros). Inlined with a constant cb, so the 2 cb accumulators stay in registers. */
static inline __attribute__((always_inline)) void conv_rows(const float *image, int hp, int wp, int pad, int side,
                                                            const float *w, const float *bias, const float *offset,
                                                            const int cb, float *z) {
    for (int y = 0; y < side; y++) {
        int dy0 = y < pad ? pad - y : 0, dy1 = y + 2 >= IN + pad ? IN + pad - 1 - y : 2;
#ifdef __AVX512F__
        __m512 acc[8][2];
        for (int k = 0; k < cb; k++) {
            if (offset) {
                acc[k][0] = _mm512_loadu_ps(offset + ((size_t)k * side + y) * LANES);
                acc[k][1] = _mm512_loadu_ps(offset + ((size_t)k * side + y) * LANES + 16);
            } else {
                acc[k][0] = acc[k][1] = _mm512_set1_ps(bias[k]);
            }
        }
        for (int ch = 0; ch < 3; ch++)
            for (int dy = dy0; dy <= dy1; dy++) {
                const float *row = image + ((size_t)ch * hp + y + dy) * wp;
                for (int dx = 0; dx < 3; dx++) {
                    __m512 x0 = _mm512_loadu_ps(row + dx), x1 = _mm512_loadu_ps(row + 16 + dx);
                    int t = ch * 9 + dy * 3 + dx;
                    for (int k = 0; k < cb; k++) {
                        __m512 wt = _mm512_set1_ps(w[k * TAPS + t]);
                        acc[k][0] = _mm512_fmadd_ps(wt, x0, acc[k][0]);
                        acc[k][1] = _mm512_fmadd_ps(wt, x1, acc[k][1]);
                    }
                }
            }
        for (int k = 0; k < cb; k++) {
            _mm512_storeu_ps(z + ((size_t)k * side + y) * LANES, acc[k][0]);
            _mm512_storeu_ps(z + ((size_t)k * side + y) * LANES + 16, acc[k][1]);
        }
#else
        for (int k = 0; k < cb; k++) {
            float *out = z + ((size_t)k * side + y) * LANES;
            for (int x = 0; x < LANES; x++) out[x] = offset ? offset[((size_t)k * side + y) * LANES + x] : bias[k];
            for (int ch = 0; ch < 3; ch++)
                for (int dy = dy0; dy <= dy1; dy++) {
                    const float *row = image + ((size_t)ch * hp + y + dy) * wp;
                    for (int dx = 0; dx < 3; dx++) {
                        float wt = w[k * TAPS + ch * 9 + dy * 3 + dx];
                        for (int x = 0; x < LANES; x++) out[x] = fmaf(wt, row[x + dx], out[x]);
                    }
                }
        }
#endif
    }
}

static void conv_block(const float *image, const Spec *sp, int side, const float *w, const float *bias,
                       const float *offset, int cb, float *z) {
    const int hp = sp->hp, wp = sp->wp, pad = sp->pad;
    switch (cb) {
#define CASE(n) case n: conv_rows(image, hp, wp, pad, side, w, bias, offset, n, z); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
        default: break;
    }
}

/* ------------------------------------------------------------------------------------------ moments */
#define MROWS 28             /* M2's rows: 27, and one never read so that rows come in tiles of 4 */
#define BLOCK 64             /* flipped patches added to the moments at once */
typedef struct {
    double count;            /* pixels where z > 0 */
    double s1[TROW];         /* sum of their centred patches */
    double m2[MROWS * TROW]; /* sum of d d^T (rows of 32, the last 5 columns zero) */
} Moments;

static inline void patch_at(const float *image, const float *mean, const Spec *sp, int y, int x, double *d) {
    const int hp = sp->hp, wp = sp->wp;
    for (int ch = 0; ch < 3; ch++)
        for (int dy = 0; dy < 3; dy++) {
            const float *row = image + ((size_t)ch * hp + y + dy) * wp + x;
            const float *mrow = mean ? mean + ((size_t)ch * hp + y + dy) * wp + x : NULL;
            for (int dx = 0; dx < 3; dx++) d[ch * 9 + dy * 3 + dx] = (double)row[dx] - (mrow ? (double)mrow[dx] : 0.0);
        }
    for (int t = TAPS; t < TROW; t++) d[t] = 0.0;
}

/* The moments plus (sign +1) or minus (-1) the n patches d (n x 32) with signs s. Four rows of M2 at a time
 * stay in registers while the patches stream past. */
static void add_patches(Moments *mo, const double *d, const double *s, int n) {
    for (int i = 0; i < n; i++) {
        mo->count += s[i];
        for (int t = 0; t < TROW; t++) mo->s1[t] += s[i] * d[i * TROW + t];
    }
    for (int t0 = 0; t0 < MROWS; t0 += 4) {
#ifdef __AVX512F__
        __m512d acc[4][4];
        for (int r = 0; r < 4; r++)
            for (int v = 0; v < 4; v++) acc[r][v] = _mm512_loadu_pd(mo->m2 + (t0 + r) * TROW + 8 * v);
        for (int i = 0; i < n; i++) {
            const double *di = d + i * TROW;
            __m512d row[4];
            for (int v = 0; v < 4; v++) row[v] = _mm512_loadu_pd(di + 8 * v);
            for (int r = 0; r < 4; r++) {
                __m512d a = _mm512_set1_pd(s[i] * di[t0 + r]);
                for (int v = 0; v < 4; v++) acc[r][v] = _mm512_fmadd_pd(a, row[v], acc[r][v]);
            }
        }
        for (int r = 0; r < 4; r++)
            for (int v = 0; v < 4; v++) _mm512_storeu_pd(mo->m2 + (t0 + r) * TROW + 8 * v, acc[r][v]);
#else
        for (int i = 0; i < n; i++) {
            const double *di = d + i * TROW;
            for (int r = 0; r < 4; r++) {
                double a = s[i] * di[t0 + r];
                double *row = mo->m2 + (t0 + r) * TROW;
                for (int u = 0; u < TROW; u++) row[u] = fma(a, di[u], row[u]);
            }
        }
#endif
    }
}

/* ------------------------------------------------------------------------------------------ pooling */
/* Where window (i, j)'s pooled value is kept: quadrant-major, (i % 2, j % 2) then the average pool's (i / 2, j / 2),
 * so that the 2x2 average pool adds four runs of 25. */
static inline int slot_of(int i, int j) { return ((i & 1) * 2 + (j & 1)) * AQQ + (i >> 1) * AQ + (j >> 1); }

/* For channel map zc (side x 32): each 3x3 window's largest (smallest where use_min) z and its pixel
 * (y * 32 + x). Windows: rows and columns 3i-1 .. 3i+1 within the map; ties go to the first pixel found
 * in column-then-row order (exact ties come from equal patches, whose gradients are equal). */
__attribute__((unused)) static void pool_windows(const float *zc, int side, int use_min, float *value, int32_t *where) {
    for (int i = 0; i < PQ; i++) {
        int r0 = 3 * i - 1 < 0 ? 0 : 3 * i - 1, r2 = 3 * i + 1 > side - 1 ? side - 1 : 3 * i + 1;
        for (int j = 0; j < PQ; j++) {
            int c0 = 3 * j - 1 < 0 ? 0 : 3 * j - 1, c2 = 3 * j + 1 > side - 1 ? side - 1 : 3 * j + 1;
            float best = zc[r0 * LANES + c0];
            int at = r0 * LANES + c0;
            for (int c = c0; c <= c2; c++)
                for (int r = r0; r <= r2; r++) {
                    float v = zc[r * LANES + c];
                    if (use_min ? v < best : v > best) { best = v; at = r * LANES + c; }
                }
            value[slot_of(i, j)] = best;
            where[slot_of(i, j)] = at;
        }
    }
}

#ifdef __AVX512F__
/* The same windows, sixteen lanes at a time: the vertical extreme of each column over the window's rows,
 * then the three columns of each window gathered into lanes 0..9 (two-source permutes) and compared. */
static void pool_windows_avx(const float *zc, int side, int use_min, float *value, int32_t *where) {
    int ia[16], ib[16], ic[16];
    for (int j = 0; j < 16; j++) {
        int jj = j < PQ ? j : 0;
        int c0 = 3 * jj - 1 < 0 ? 0 : 3 * jj - 1, c2 = 3 * jj + 1 > side - 1 ? side - 1 : 3 * jj + 1;
        ia[j] = c0; ib[j] = 3 * jj; ic[j] = c2;
    }
    const __m512i xa = _mm512_loadu_si512(ia), xb = _mm512_loadu_si512(ib), xc = _mm512_loadu_si512(ic);
#define BETTER(a, b) (use_min ? _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ) : _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ))
    for (int i = 0; i < PQ; i++) {
        int r0 = 3 * i - 1 < 0 ? 0 : 3 * i - 1, r2 = 3 * i + 1 > side - 1 ? side - 1 : 3 * i + 1;
        __m512 lo = _mm512_loadu_ps(zc + r0 * LANES), hi = _mm512_loadu_ps(zc + r0 * LANES + 16);
        __m512i rlo = _mm512_set1_epi32(r0), rhi = rlo;
        for (int r = r0 + 1; r <= r2; r++) {
            __m512 a = _mm512_loadu_ps(zc + r * LANES), b = _mm512_loadu_ps(zc + r * LANES + 16);
            __mmask16 ma = BETTER(a, lo), mb = BETTER(b, hi);
            lo = _mm512_mask_blend_ps(ma, lo, a); hi = _mm512_mask_blend_ps(mb, hi, b);
            rlo = _mm512_mask_blend_epi32(ma, rlo, _mm512_set1_epi32(r));
            rhi = _mm512_mask_blend_epi32(mb, rhi, _mm512_set1_epi32(r));
        }
        __m512 best = _mm512_permutex2var_ps(lo, xa, hi);
        __m512i row = _mm512_permutex2var_epi32(rlo, xa, rhi), col = xa;
        __m512 v = _mm512_permutex2var_ps(lo, xb, hi);
        __mmask16 m = BETTER(v, best);
        best = _mm512_mask_blend_ps(m, best, v);
        row = _mm512_mask_blend_epi32(m, row, _mm512_permutex2var_epi32(rlo, xb, rhi));
        col = _mm512_mask_blend_epi32(m, col, xb);
        v = _mm512_permutex2var_ps(lo, xc, hi);
        m = BETTER(v, best);
        best = _mm512_mask_blend_ps(m, best, v);
        row = _mm512_mask_blend_epi32(m, row, _mm512_permutex2var_epi32(rlo, xc, rhi));
        col = _mm512_mask_blend_epi32(m, col, xc);
        __m512i at = _mm512_add_epi32(_mm512_slli_epi32(row, 5), col);
        int even = slot_of(i, 0), odd = slot_of(i, 1);   /* lanes 0, 2, .. 8 and 1, 3, .. 9 */
        _mm512_mask_compressstoreu_ps(value + even, 0x0155, best);
        _mm512_mask_compressstoreu_ps(value + odd, 0x02AA, best);
        _mm512_mask_compressstoreu_epi32(where + even, 0x0155, at);
        _mm512_mask_compressstoreu_epi32(where + odd, 0x02AA, at);
    }
#undef BETTER
}
#endif

/* ------------------------------------------------------------------------------------------ one fold */
typedef struct {
    const Spec *sp;
    const Job *job;
    int side, C, K, nparams, max_batch, total_entries;
    uint32_t *masks;     /* (entry, channel, row): bits of the pixels with z > 0 */
    Moments *moments;    /* (batch, channel) */
    float *zbuf;         /* 8 channels x side x 32 */
    float *offset;       /* C x side x 32: bias - conv(mean image), zero-centred input only */
    float *pooled;       /* (batch entry, channel, 100) */
    int32_t *where;      /* (batch entry, channel, 100): each pooled value's pixel, y x 32 + x */
    uint8_t *keep;
    float *feats;        /* (batch entry, C x 25): the fully connected layer's inputs */
    float *dlogits;      /* (batch entry, K) */
    double *grad;
    float *dfc;          /* C x 25: one class's fully connected weight gradient */
    double *flipped;     /* BLOCK x 32 patches waiting to enter the moments */
} Fold;

static int param_count(int C, int K) { return C * TAPS + 3 * C + K * C * AQQ + K; }

/* Pass 1 over one image: convolution, ReLU mask flips into the batch's moments, pooled extremes. */
static void dense_pass(Fold *f, const float *image, int entry, int slot, Moments *mo, const int *use_min,
                       double *flips) {
    const Spec *sp = f->sp;
    const float *mean = f->job->mean_image;
    const int side = f->side, C = f->C;
    const float *params = f->job->params;
    const uint32_t lane_mask = side >= 32 ? 0xFFFFFFFFu : ((1u << side) - 1u);
    double signs[BLOCK];
    for (int c0 = 0; c0 < C; c0 += 8) {
        int cb = C - c0 < 8 ? C - c0 : 8;
        conv_block(image, sp, side, params + c0 * TAPS, params + C * TAPS + c0,
                   f->offset ? f->offset + (size_t)c0 * side * LANES : NULL, cb, f->zbuf);
        for (int k = 0; k < cb; k++) {
            int c = c0 + k, waiting = 0;
            const float *zc = f->zbuf + (size_t)k * side * LANES;
            uint32_t *mask = f->masks + ((size_t)entry * C + c) * side;
            for (int y = 0; y < side; y++) {
                uint32_t bits = 0;
#ifdef __AVX512F__
                __m512 zero = _mm512_setzero_ps();
                bits = (uint32_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(zc + y * LANES), zero, _CMP_GT_OQ)
                     | ((uint32_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(zc + y * LANES + 16), zero, _CMP_GT_OQ) << 16);
#else
                for (int x = 0; x < LANES; x++) bits |= (uint32_t)(zc[y * LANES + x] > 0.0f) << x;
#endif
                bits &= lane_mask;
                uint32_t diff = bits ^ mask[y];
                mask[y] = bits;
                while (diff) {
                    int x = __builtin_ctz(diff);
                    diff &= diff - 1;
                    patch_at(image, mean, sp, y, x, f->flipped + waiting * TROW);
                    signs[waiting++] = (bits >> x) & 1u ? 1.0 : -1.0;
                    if (waiting == BLOCK) { add_patches(mo + c, f->flipped, signs, waiting); *flips += waiting; waiting = 0; }
                }
            }
            if (waiting) { add_patches(mo + c, f->flipped, signs, waiting); *flips += waiting; }
            float *value = f->pooled + ((size_t)slot * C + c) * PQQ;
            int32_t *where = f->where + ((size_t)slot * C + c) * PQQ;
#ifdef __AVX512F__
            pool_windows_avx(zc, side, use_min[c], value, where);
#else
            pool_windows(zc, side, use_min[c], value, where);
#endif
        }
    }
}

/* out[t] += sign * sum over the listed windows of (dy * gi) times tap t of the patch at the window's pooled
 * pixel in ``image``: nine rows of three taps, four columns loaded at a time (the fourth is not used). */
static void patch_sums(const float *image, const Spec *sp, const int *active, int n_active, const float *dy,
                       float gi, const int32_t *where, double *out, double sign) {
    const size_t plane = (size_t)sp->hp * sp->wp, wp = sp->wp;
#if defined(__FMA__) || defined(__AVX512F__)
    __m128 acc[9];
    for (int r = 0; r < 9; r++) acc[r] = _mm_setzero_ps();
    for (int a = 0; a < n_active; a++) {
        int q = active[a], at = where[q];
        const float *base = image + (size_t)(at >> 5) * wp + (at & 31);
        __m128 gz = _mm_set1_ps(dy[q] * gi);
        for (int ch = 0; ch < 3; ch++)
            for (int dy0 = 0; dy0 < 3; dy0++)
                acc[ch * 3 + dy0] = _mm_fmadd_ps(gz, _mm_loadu_ps(base + ch * plane + dy0 * wp), acc[ch * 3 + dy0]);
    }
    float lanes[9][4];
    for (int r = 0; r < 9; r++) _mm_storeu_ps(lanes[r], acc[r]);
#else
    float lanes[9][4] = {{0}};
    for (int a = 0; a < n_active; a++) {
        int q = active[a], at = where[q];
        const float *base = image + (size_t)(at >> 5) * wp + (at & 31);
        float gz = dy[q] * gi;
        for (int ch = 0; ch < 3; ch++)
            for (int dy0 = 0; dy0 < 3; dy0++)
                for (int l = 0; l < 4; l++) lanes[ch * 3 + dy0][l] = fmaf(gz, base[ch * plane + dy0 * wp + l], lanes[ch * 3 + dy0][l]);
    }
#endif
    for (int r = 0; r < 9; r++)
        for (int l = 0; l < 3; l++) out[r * 3 + l] += sign * lanes[r][l];
}

/* One step on batch b: returns the batch's mean loss; leaves the gradient in f->grad. */
static double step(Fold *f, int b, uint64_t t, double *flips) {
    const Spec *sp = f->sp;
    const Job *job = f->job;
    const int side = f->side, C = f->C, K = f->K, F = C * AQQ;
    float *P = job->params;
    const float *W = P, *bias = P + C * TAPS, *gamma = P + C * 28, *beta = P + C * 29, *fcw = P + C * 30,
                *fcb = P + C * 30 + K * F;
    const int start = job->batch_start[b], B = job->batch_start[b + 1] - start;
    Moments *mo = f->moments + (size_t)b * C;
    const float *mean = job->mean_image;
    int use_min[MAXC];
    for (int c = 0; c < C; c++) use_min[c] = gamma[c] < 0.0f;  /* BN's scale negative: max pooling takes the min */

    if (mean) {  /* zero-centred input: z = conv(x) + (b - conv(mean)) */
        static const float zeros[8] = {0};
        for (int c0 = 0; c0 < C; c0 += 8) {
            int cb = C - c0 < 8 ? C - c0 : 8;
            float *out = f->offset + (size_t)c0 * side * LANES;
            conv_block(mean, sp, side, W + c0 * TAPS, zeros, NULL, cb, out);
            for (int k = 0; k < cb; k++)
                for (int i = 0; i < side * LANES; i++) out[k * side * LANES + i] = bias[c0 + k] - out[k * side * LANES + i];
        }
    }
    /* pass 1 */
    for (int e = 0; e < B; e++) {
        int image = job->batch_images[start + e];
        dense_pass(f, sp->images + (size_t)image * 3 * sp->hp * sp->wp, start + e, e, mo, use_min, flips);
    }
    /* batch statistics from the moments */
    const double n = (double)B * side * side;
    double mu[MAXC], var[MAXC], istd[MAXC], s2[MAXC][TROW], sr[MAXC];
    for (int c = 0; c < C; c++) {
        const double *s1 = mo[c].s1, *m2 = mo[c].m2;
        double wd[TROW] = {0}, ws1 = 0.0, wm2w = 0.0;
        for (int t = 0; t < TAPS; t++) wd[t] = W[c * TAPS + t];
        for (int t = 0; t < TAPS; t++) {
            double row = 0.0;
            for (int u = 0; u < TAPS; u++) row += m2[t * TROW + u] * wd[u];
            s2[c][t] = row + bias[c] * s1[t];
            wm2w += wd[t] * row;
            ws1 += wd[t] * s1[t];
        }
        sr[c] = ws1 + bias[c] * mo[c].count;
        double sr2 = wm2w + 2.0 * bias[c] * ws1 + (double)bias[c] * bias[c] * mo[c].count;
        mu[c] = sr[c] / n;
        var[c] = sr2 / n - mu[c] * mu[c];
        if (var[c] < 0.0) var[c] = 0.0;
        istd[c] = 1.0 / sqrt(var[c] + sp->bn_eps);
    }
    /* pass 2: the head, forward and backward, per image */
    dropout_keep(job->seed, t, B * C * PQQ, sp->dropout, f->keep);
    const float scale = sp->dropout > 0.0f ? 1.0f / (1.0f - sp->dropout) : 1.0f;
    double *grad = f->grad;
    memset(grad, 0, sizeof(double) * f->nparams);
    double *gW = grad, *gb = grad + C * TAPS, *gg = grad + C * 28, *gbeta = grad + C * 29, *gfw = grad + C * 30,
           *gfb = grad + C * 30 + K * F;
    double sums_b[MAXC] = {0}, sums_g[MAXC] = {0};
    double loss = 0.0;
    float muf[MAXC], isf[MAXC];
    for (int c = 0; c < C; c++) { muf[c] = (float)mu[c]; isf[c] = (float)istd[c]; }
    float dfeat[MAXC * AQQ], ks[MAXC * PQQ], xh[MAXC * PQQ], dy[PQQ];
    for (int e = 0; e < B; e++) {
        const float *zs = f->pooled + (size_t)e * C * PQQ;
        const uint8_t *keep = f->keep + (size_t)e * C * PQQ;
        float *feat = f->feats + (size_t)e * F;
        for (int i = 0; i < C * PQQ; i++) ks[i] = keep[i] ? scale : 0.0f;
        for (int c = 0; c < C; c++) {
            const float m = muf[c], is = isf[c], g = gamma[c], be = beta[c];
            const float *z = zs + c * PQQ, *kc = ks + c * PQQ;
            float *x = xh + c * PQQ, ys[PQQ];
            for (int q = 0; q < PQQ; q++) {
                float h = z[q] > 0.0f ? z[q] : 0.0f;
                x[q] = (h - m) * is;
                ys[q] = (g * x[q] + be) * kc[q];
            }
            /* pooled values are stored quadrant-major: the average pool sums four runs of 25 */
            for (int i = 0; i < AQQ; i++)
                feat[c * AQQ + i] = 0.25f * (((ys[i] + ys[AQQ + i]) + ys[2 * AQQ + i]) + ys[3 * AQQ + i]);
        }
        float logits[MAXK], top = -INFINITY;
        for (int k = 0; k < K; k++) {  /* sixteen lanes of partial sums, then their sum */
            float lanes[16] = {0};
            const float *wk = fcw + k * F;
            int i = 0;
            for (; i + 16 <= F; i += 16)
                for (int l = 0; l < 16; l++) lanes[l] += wk[i + l] * feat[i + l];
            for (; i < F; i++) lanes[i & 15] += wk[i] * feat[i];
            float s = 0.0f;
            for (int l = 0; l < 16; l++) s += lanes[l];
            logits[k] = s + fcb[k];
            if (logits[k] > top) top = logits[k];
        }
        double z = 0.0, p[MAXK];
        for (int k = 0; k < K; k++) z += exp((double)(logits[k] - top));
        int label = job->batch_labels[start + e];
        loss += log(z) - (double)(logits[label] - top);
        float *dlog = f->dlogits + (size_t)e * K;
        for (int k = 0; k < K; k++) {
            p[k] = exp((double)(logits[k] - top)) / z;
            dlog[k] = (float)((p[k] - (k == label)) / B);
            gfb[k] += dlog[k];
        }
        for (int i = 0; i < F; i++) dfeat[i] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float *wk = fcw + k * F, dk = dlog[k];
            for (int i = 0; i < F; i++) dfeat[i] += wk[i] * dk;
        }
        const size_t image_floats = (size_t)3 * sp->hp * sp->wp;
        const float *image = sp->images + (size_t)job->batch_images[start + e] * image_floats;
        const int32_t *where = f->where + (size_t)e * C * PQQ;
        for (int c = 0; c < C; c++) {
            const float is = isf[c], g = gamma[c];
            const float *zc = zs + c * PQQ, *kc = ks + c * PQQ, *x = xh + c * PQQ, *df = dfeat + c * AQQ;
            for (int quarter = 0; quarter < 4; quarter++)
                for (int i = 0; i < AQQ; i++) dy[quarter * AQQ + i] = 0.25f * df[i] * kc[quarter * AQQ + i];
            float lb[16] = {0}, lg[16] = {0};
            int q = 0;
            for (; q + 16 <= PQQ; q += 16)
                for (int l = 0; l < 16; l++) { lb[l] += dy[q + l]; lg[l] += dy[q + l] * x[q + l]; }
            for (; q < PQQ; q++) { lb[q & 15] += dy[q]; lg[q & 15] += dy[q] * x[q]; }
            float sb = 0.0f, sg = 0.0f;
            for (int l = 0; l < 16; l++) { sb += lb[l]; sg += lg[l]; }
            sums_b[c] += sb;
            sums_g[c] += sg;
            /* the ReLU passes the gradient to the pooled pixel: its patch times g z (the active windows
             * listed first, then their patches summed four columns at a time) */
            int active[PQQ + 16], n_active = 0;
#ifdef __AVX512F__
            for (int q0 = 0; q0 < PQQ; q0 += 16) {
                __mmask16 lanes = q0 + 16 <= PQQ ? 0xFFFF : (__mmask16)((1u << (PQQ - q0)) - 1u);
                __m512 zv = _mm512_maskz_loadu_ps(lanes, zc + q0), dv = _mm512_maskz_loadu_ps(lanes, dy + q0);
                __mmask16 on = _mm512_mask_cmp_ps_mask(lanes, zv, _mm512_setzero_ps(), _CMP_GT_OQ)
                             & _mm512_mask_cmp_ps_mask(lanes, dv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                __m512i index = _mm512_add_epi32(_mm512_set1_epi32(q0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8,
                                                                                          9, 10, 11, 12, 13, 14, 15));
                _mm512_mask_compressstoreu_epi32(active + n_active, on, index);
                n_active += __builtin_popcount(on);
            }
#else
            for (int q1 = 0; q1 < PQQ; q1++)
                if (zc[q1] > 0.0f && dy[q1] != 0.0f) active[n_active++] = q1;
#endif
            const float gi = g * is;
            float accb = 0.0f;
            for (int a = 0; a < n_active; a++) accb += dy[active[a]] * gi;
            gb[c] += accb;
            patch_sums(image, sp, active, n_active, dy, gi, where + c * PQQ, gW + c * TAPS, 1.0);
            if (mean)  /* the centred patch is the image's minus the mean image's */
                patch_sums(mean, sp, active, n_active, dy, gi, where + c * PQQ, gW + c * TAPS, -1.0);
        }
    }
    /* the fully connected layer's weight gradient: dlogits^T feats over the batch */
    for (int k = 0; k < K; k++) {
        float *row = f->dfc;
        for (int i = 0; i < F; i++) row[i] = 0.0f;
        for (int e = 0; e < B; e++) {
            const float dk = f->dlogits[(size_t)e * K + k], *fe = f->feats + (size_t)e * F;
            for (int i = 0; i < F; i++) row[i] += dk * fe[i];
        }
        for (int i = 0; i < F; i++) gfw[k * F + i] = row[i];
    }
    /* batch norm: the scale's and offset's gradients; the mean's and variance's, through the moments */
    for (int c = 0; c < C; c++) {
        gbeta[c] = sums_b[c];
        gg[c] = sums_g[c];
        double dmu = -gamma[c] * sums_b[c] * istd[c];                    /* sum dy * gamma * (-1/sigma) */
        double dvar = -0.5 * gamma[c] * sums_g[c] * istd[c] * istd[c];   /* sum dy * gamma * (h - mu) * -sigma^-3 / 2 */
        double a = dmu / n, v = 2.0 * dvar / n;
        for (int tt = 0; tt < TAPS; tt++) gW[c * TAPS + tt] += a * mo[c].s1[tt] + v * (s2[c][tt] - mu[c] * mo[c].s1[tt]);
        gb[c] += a * mo[c].count + v * (sr[c] - mu[c] * mo[c].count);
    }
    float *running = job->running;
    for (int c = 0; c < C; c++) {
        running[c] = (float)((1.0 - sp->bn_momentum) * running[c] + sp->bn_momentum * mu[c]);
        running[C + c] = (float)((1.0 - sp->bn_momentum) * running[C + c] + sp->bn_momentum * var[c] * n / (n - 1.0));
    }
    return loss / B;
}

/* PyTorch's Adam (torch.optim.Adam, single tensor): coupled weight decay, bias corrections, float32 state. */
static void adam(Fold *f, float *m, float *v, uint64_t t) {
    const Spec *sp = f->sp;
    const int C = f->C, K = f->K, F = C * AQQ;
    float *P = f->job->params;
    double bc1 = 1.0 - pow(sp->beta1, (double)t), bc2 = 1.0 - pow(sp->beta2, (double)t);
    float step_size = (float)(sp->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int i = 0; i < f->nparams; i++) {
        int decayed = i < C * TAPS || (i >= C * 28 && i < C * 30 + K * F);  /* conv W, BN scale+offset, fc W */
        float g = (float)f->grad[i];
        if (sp->weight_decay != 0.0f && decayed) g += sp->weight_decay * P[i];
        m[i] = sp->beta1 * m[i] + (1.0f - sp->beta1) * g;
        v[i] = sp->beta2 * v[i] + (1.0f - sp->beta2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + sp->adam_eps;
        P[i] -= step_size * m[i] / denom;
    }
}

/* Train one fold for spec->steps steps (batch t mod n_batches at step t). Returns 0, or -1 when memory
 * runs out. */
int train_fold(const Spec *sp, const Job *job) {
    Fold f = {0};
    f.sp = sp; f.job = job;
    f.side = IN + 2 * sp->pad - 2;
    f.C = sp->channels; f.K = sp->classes;
    f.nparams = param_count(f.C, f.K);
    f.total_entries = job->batch_start[job->n_batches];
    for (int b = 0; b < job->n_batches; b++) {
        int size = job->batch_start[b + 1] - job->batch_start[b];
        if (size > f.max_batch) f.max_batch = size;
    }
    f.masks = calloc((size_t)f.total_entries * f.C * f.side, sizeof(uint32_t));
    f.moments = calloc((size_t)job->n_batches * f.C, sizeof(Moments));
    f.zbuf = malloc(sizeof(float) * 8 * f.side * LANES);
    f.offset = job->mean_image ? malloc(sizeof(float) * f.C * f.side * LANES) : NULL;
    f.pooled = malloc(sizeof(float) * (size_t)f.max_batch * f.C * PQQ);
    f.where = malloc(sizeof(int32_t) * (size_t)f.max_batch * f.C * PQQ);
    f.keep = malloc((size_t)f.max_batch * f.C * PQQ + 4);
    f.grad = malloc(sizeof(double) * f.nparams);
    f.feats = malloc(sizeof(float) * (size_t)f.max_batch * f.C * AQQ);
    f.dlogits = malloc(sizeof(float) * (size_t)f.max_batch * f.K);
    f.dfc = malloc(sizeof(float) * f.C * AQQ);
    f.flipped = malloc(sizeof(double) * BLOCK * TROW);
    float *m = calloc(f.nparams, sizeof(float)), *v = calloc(f.nparams, sizeof(float));
    int failed = !f.masks || !f.moments || !f.zbuf || (job->mean_image && !f.offset) || !f.pooled || !f.where
                 || !f.keep || !f.grad || !f.feats || !f.dlogits || !f.dfc || !f.flipped || !m || !v;
    double flips = 0.0, pixels = 0.0;
    if (!failed) {
        for (int c = 0; c < f.C; c++) { job->running[c] = 0.0f; job->running[f.C + c] = 1.0f; }
        for (int t = 0; t < sp->steps; t++) {
            int b = t % job->n_batches;
            double loss = step(&f, b, (uint64_t)t, &flips);
            pixels += (double)(job->batch_start[b + 1] - job->batch_start[b]) * f.side * f.side * f.C;
            adam(&f, m, v, (uint64_t)t + 1);
            if (job->losses) job->losses[t] = (float)loss;
        }
        if (job->stats) { job->stats[0] = flips; job->stats[1] = pixels; }
    }
    free(f.masks); free(f.moments); free(f.zbuf); free(f.offset); free(f.pooled); free(f.where); free(f.keep);
    free(f.grad); free(f.feats); free(f.dlogits); free(f.dfc); free(f.flipped); free(m); free(v);
    return failed ? -1 : 0;
}

int abi_version(void) { return 1; }

/* Channel-resident passes for NCHW tensors: one work-group per channel runs
 * both passes of a training forward (statistics, then y) or of a training
 * backward (the sums, then dx) over that channel, so the second pass reads
 * the channel from the caches instead of memory (src/geometry.c picks them when a channel's data fit the cache budget
 * and there are enough channels to keep every compute unit busy). Each
 * work-item takes pieces of the channel's N x S matrix, piece p being
 * columns [(p % chunks)*cols, +cols) of row p / chunks, the same ones in both
 * passes, so each item re-reads what it read itself (CHANNEL_PIECES: with
 * GPU geometry p = l, l + L, ..., so adjacent items read adjacent pieces;
 * on CPUs, whose devices run a group's items one after another, item l
 * takes pieces [l*per_item, (l + 1)*per_item), so the group walks the
 * channel in order). The first pass prefetches the pieces that come about
 * CLBN_PREFETCH_BYTES later, in the walk's order: a channel's rows are short
 * runs C*S values apart, which the hardware prefetcher does not follow
 * (PREFETCH_PIECE; nothing where the device has no prefetch). The group's sums are
 * tree-added in local memory in a fixed order: results are bitwise
 * reproducible. Needs common.cl, stats.cl (the lanes' Welford blocks) and
 * backward.cl (bwd_local_tree, BWD_DX, the CLBN_LOCAL_SLOTS bound). */

/* The pieces p of work-item l of L, out of `pieces` (per_item: 0 for the
 * interleaved order, else each item's count). */
#define CHANNEL_PIECES(p, l, L, pieces, per_item)                                        \
    for (ulong p = (per_item) ? (l) * (per_item) : (l),                                   \
               p##_end = (per_item) ? min((ulong)(pieces), ((l) + 1) * (per_item)) : (pieces); \
         p < p##_end; p += (per_item) ? 1 : (L))

/* PREFETCH_RUN of piece q of tensor t's channel c (when q < pieces). */
#define PREFETCH_PIECE(t, t_sn, t_sc, q, pieces)                                          \
    do {                                                                                  \
        if ((t) && (q) < (pieces)) {                                                      \
            const ulong pf_s0 = ((q) % chunks) * cols;                                    \
            PREFETCH_RUN(ROW_AT(t, (q) / chunks, c, t_sn, t_sc) + pf_s0, min(cols, S - pf_s0)); \
        }                                                                                 \
    } while (0)
/* How many pieces ahead the first pass prefetches: CLBN_PREFETCH_BYTES. */
#define PIECES_AHEAD(cols) ((PREFETCH_AHEAD + (cols) - 1) / (cols))

/* The training backward (arguments as clbn_small_backward, plus the piece
 * geometry, cols, chunks = ceil(S / cols) and per_item (CHANNEL_PIECES),
 * and whether to stream dx; then
 * the element offsets, then each tensor's n and c strides: ROW_AT). */
__kernel void clbn_channel_backward(__global const data_t *x, __global const data_t *dy,
                                    __global data_t *dx, __global const data_t *y,
                                    __global data_t *dz, ulong N, ulong C, ulong S,
                                    acc inv_m, __global const acc *weight,
                                    __global const acc *mean, __global const acc *invstd,
                                    __global acc *dweight, __global acc *dbias, ulong cols,
                                    ulong chunks, ulong per_item, int stream,
                                    __global const acc *renorm,
                                    ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                    ulong dz_off, ulong weight_off, ulong mean_off,
                                    ulong invstd_off, ulong dweight_off, ulong dbias_off,
                                    ulong x_sn, ulong x_sc, ulong dy_sn, ulong dy_sc, ulong dx_sn,
                                    ulong dx_sc, ulong y_sn, ulong y_sc, ulong dz_sn, ulong dz_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off; weight += weight_off;
    mean += mean_off; invstd += invstd_off; dweight += dweight_off; dbias += dbias_off;
    __local acc lsum[CLBN_LOCAL_SLOTS], lsumx[CLBN_LOCAL_SLOTS];
    const ulong c = get_group_id(0);
    const uint l = (uint)get_local_id(0), L = (uint)get_local_size(0);
    const ulong pieces = N * chunks;
    const acc mu = mean[c], ist = invstd[c];
    acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
    acc a1 = 0.0f, b1 = 0.0f;
    const ulong ahead = PIECES_AHEAD(cols);
    CHANNEL_PIECES(p, l, L, pieces, per_item) {
        const ulong n = p / chunks, s0 = (p % chunks) * cols;
        PREFETCH_PIECE(x, x_sn, x_sc, p + ahead, pieces);
        PREFETCH_PIECE(dy, dy_sn, dy_sc, p + ahead, pieces);
        PREFETCH_PIECE(y, y_sn, y_sc, p + ahead, pieces);
        bwd_sums_run(ROW_AT(x, n, c, x_sn, x_sc), ROW_AT(dy, n, c, dy_sn, dy_sc),
                     ROW_AT(y, n, c, y_sn, y_sc), 0, s0, min(S, s0 + cols), mu, &a8, &b8, &a1, &b1);
    }
    lsum[l] = sum8(a8) + a1;
    lsumx[l] = sum8(b8) + b1;
    bwd_local_tree(lsum, lsumx, l, L, 0, 1, 1);
    const acc sum = lsum[0], sumx = lsumx[0];
    if (l == 0) {
        if (dweight)
            dweight[c] = renorm_dweight(sum, sumx, ist, renorm, c, C);
        if (dbias)
            dbias[c] = sum;
    }
    if (!dx && !dz)
        return;
    const acc4 abk = bwd_coefs(sum, sumx, ist, renorm_weight(weight, renorm, c), inv_m);
    CHANNEL_PIECES(p, l, L, pieces, per_item) {
        const ulong n = p / chunks, s0 = (p % chunks) * cols;
        bwd_dx_run(ROW_AT(x, n, c, x_sn, x_sc), ROW_AT(dy, n, c, dy_sn, dy_sc),
                   ROW_AT(dx, n, c, dx_sn, dx_sc), ROW_AT(y, n, c, y_sn, y_sc),
                   ROW_AT(dz, n, c, dz_sn, dz_sc), 0, s0, min(S, s0 + cols), mu, abk.x, abk.y,
                   abk.z, stream);
    }
}

/* The training forward (arguments as clbn_small_training, plus the piece
 * geometry, cols, chunks and per_item, and whether to stream y): the group's statistics of x - pivot
 * (per-item lanes as in stats.cl, tree-merged by Chan's formula), the saved
 * and running statistics written by the first work-item, then y. y may alias
 * x: each work-item writes only the pieces it read, after the whole group has
 * read the channel. */
__kernel void clbn_channel_training(__global const data_t *x, __global const data_t *z,
                                    __global data_t *y, ulong N, ulong C, ulong S,
                                    acc inv_m, acc unbias, acc epsilon, acc momentum, int update,
                                    __global const acc *weight, __global const acc *bias,
                                    __global acc *running_mean, __global acc *running_var,
                                    __global acc *save_mean, __global acc *save_invstd, int relu,
                                    ulong cols, ulong chunks, ulong per_item, int stream,
                                    int variant, acc rmax,
                                    acc dmax, __global acc *save_renorm, __global uint *skipped,
                                    ulong x_off, ulong z_off, ulong y_off, ulong weight_off,
                                    ulong bias_off, ulong running_mean_off, ulong running_var_off,
                                    ulong save_mean_off, ulong save_invstd_off, ulong x_sn,
                                    ulong x_sc, ulong z_sn, ulong z_sc, ulong y_sn, ulong y_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; z += z_off; y += y_off; weight += weight_off; bias += bias_off;
    running_mean += running_mean_off; running_var += running_var_off; save_mean += save_mean_off;
    save_invstd += save_invstd_off;
    __local acc ln[CLBN_LOCAL_SLOTS], lmean[CLBN_LOCAL_SLOTS], lm2[CLBN_LOCAL_SLOTS];
    const ulong c = get_group_id(0);
    const uint l = (uint)get_local_id(0), L = (uint)get_local_size(0);
    const ulong pieces = N * chunks;
    const acc pivot = LOAD1(x, c * x_sc);
    /* renorm: the running statistics as they were, read by every work-item
     * before the first one updates them (after stat_local_tree's barriers) */
    const int renorm = (variant & CLBN_VARIANT_RENORM) != 0;
    const acc rm0 = renorm ? running_mean[c] : 0.0f, rv0 = renorm ? running_var[c] : 0.0f;
    acc kk = 0.0f;
    acc8 vm = (acc8)(0.0f), vq = (acc8)(0.0f);
    stat_t tail = stat_empty();
    const ulong ahead = PIECES_AHEAD(cols);
    CHANNEL_PIECES(p, l, L, pieces, per_item) {
        const ulong n = p / chunks, s0 = (p % chunks) * cols;
        PREFETCH_PIECE(x, x_sn, x_sc, p + ahead, pieces);
        stats_run(x, n * x_sn + c * x_sc, s0, min(S, s0 + cols), pivot, 0, &kk, &vm, &vq, &tail);
    }
    stat_t st = kk > 0.0f ? stat_from_lanes(kk, vm, vq) : stat_empty();
    st = stat_merge(st, tail);
    ln[l] = st.n;
    lmean[l] = st.mean;
    lm2[l] = st.m2;
    stat_local_tree(ln, lmean, lm2, l, L, 0, 1, 1);
    const acc dmean = lmean[0], mean = pivot + dmean;
    const acc var = lm2[0] * inv_m;
    const acc invstd = 1.0f / sqrt(var + epsilon);
    /* every item's read of the running statistics (renorm) before the first
     * item's update: stat_local_tree's barriers order local memory only.
     * Outside `if (renorm)`: PoCL 3.1 compiled the conditional barrier so
     * that every work-item, not only the first, then ran
     * write_channel_stats (the running statistics updated L times). */
    barrier(CLK_GLOBAL_MEM_FENCE);
    acc2 rd = (acc2)(1.0f, 0.0f);
    if (renorm) {
        rd = renorm_rd(mean, var, epsilon, rm0, rv0, rmax, dmax);
        if (l == 0 && save_renorm) {
            save_renorm[c] = rd.x;
            save_renorm[C + c] = rd.y;
        }
    }
    if (l == 0)
        write_channel_stats(c, mean, var, invstd, unbias, momentum, update, save_mean,
                            save_invstd, running_mean, running_var,
                            skip_update(variant, mean, var), skipped);
    acc scale, shift;
    if (renorm) {
        const acc w = weight ? weight[c] : 1.0f;
        scale = w * invstd * rd.x;
        shift = ((bias ? bias[c] : 0.0f) + w * rd.y) - dmean * scale;
    } else {
        scale = (weight ? weight[c] : 1.0f) * invstd;
        shift = (bias ? bias[c] : 0.0f) - dmean * scale;
    }
    CHANNEL_PIECES(p, l, L, pieces, per_item) {
        const ulong n = p / chunks, s0 = (p % chunks) * cols;
        normalize_run(ROW_AT(x, n, c, x_sn, x_sc), ROW_AT(z, n, c, z_sn, z_sc),
                      ROW_AT(y, n, c, y_sn, y_sc), 0, s0, min(S, s0 + cols), pivot, scale, shift,
                      relu, stream);
    }
}

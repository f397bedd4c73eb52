// Probe (issue 16/17): can AMX's bf16 tiles stand in for f32 products at f32 accuracy?
// Splits each f32 operand into three bf16 parts (x = h + m + l), keeps the six products whose
// error is below f32's (h·h, h·m, m·h, m·m, h·l, l·h) by stacking them along the inner
// dimension (A' = [h h m m h l], B' = [h; m; h; m; l; h]), and runs one bf16 product with f32
// accumulation (TDPBF16PS) of 2×2 tiles of 16×16 over it. Prints the raw tile rate, the
// split product's rate counted in the f32 FLOPs it replaces, and its error beside a plain f32
// loop's, both against f64. Build: gcc -O2 -march=sapphirerapids amx_bf16x3.c -o amx -lm
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
typedef struct { uint8_t palette_id, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } __attribute__((packed)) tilecfg;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static uint16_t bf16(float x) { uint32_t u; memcpy(&u, &x, 4); u += 0x7fff + ((u >> 16) & 1); return u >> 16; }
static float f32(uint16_t b) { uint32_t u = (uint32_t)b << 16; float x; memcpy(&x, &u, 4); return x; }
static void split(float x, uint16_t p[3]) { p[0] = bf16(x); float r = x - f32(p[0]); p[1] = bf16(r); r -= f32(p[1]); p[2] = bf16(r); }
enum { M = 256, N = 256, K = 256, TERMS = 6, KP = K * TERMS };
static const int a_part[TERMS] = {0, 0, 1, 1, 0, 2}, b_part[TERMS] = {0, 1, 0, 1, 2, 0};
static uint16_t Ap[M * KP] __attribute__((aligned(64)));       // row-major M × KP
static uint16_t Bp[(KP / 2) * N * 2] __attribute__((aligned(64))); // VNNI: row k/2 holds (k, k+1) pairs per column
static float A[M * K], B[K * N], C[M * N] __attribute__((aligned(64)));
// The same operands with every 16-row × 64-byte tile contiguous (1 KB, rows 64 bytes apart),
// tiles ordered as the product walks them: A by (row block, k block), B by (column block, k block).
static uint16_t At[M * KP] __attribute__((aligned(64))), Bt[KP * N] __attribute__((aligned(64)));
static void tile_pack(void) {
  for (int ib = 0; ib < M / 16; ib++) for (int kb = 0; kb < KP / 32; kb++)
    for (int r = 0; r < 16; r++) memcpy(At + ((ib * (KP / 32) + kb) * 16 + r) * 32, Ap + (ib * 16 + r) * KP + kb * 32, 64);
  for (int jb = 0; jb < N / 16; jb++) for (int kb = 0; kb < KP / 32; kb++)
    for (int r = 0; r < 16; r++) memcpy(Bt + ((jb * (KP / 32) + kb) * 16 + r) * 32, Bp + (kb * 16 + r) * N * 2 + jb * 32, 64);
}
static void tiled_product(int terms) {
  int kb_n = terms * K / 32, kb_all = KP / 32;
  for (int i0 = 0; i0 < M; i0 += 32) for (int j0 = 0; j0 < N; j0 += 32) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    const uint16_t *a0 = At + (i0 / 16) * kb_all * 512, *a1 = a0 + kb_all * 512;
    const uint16_t *b0 = Bt + (j0 / 16) * kb_all * 512, *b1 = b0 + kb_all * 512;
    for (int kb = 0; kb < kb_n; kb++) {
      _tile_loadd(4, a0 + kb * 512, 64); _tile_loadd(6, b0 + kb * 512, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(7, b1 + kb * 512, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_loadd(5, a1 + kb * 512, 64);
      _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, C + i0 * N + j0, N * 4); _tile_stored(1, C + i0 * N + j0 + 16, N * 4);
    _tile_stored(2, C + (i0 + 16) * N + j0, N * 4); _tile_stored(3, C + (i0 + 16) * N + j0 + 16, N * 4);
  }
}
static void pack(void) {
  for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) {
    uint16_t p[3]; split(A[i * K + k], p);
    for (int t = 0; t < TERMS; t++) Ap[i * KP + t * K + k] = p[a_part[t]];
  }
  for (int k = 0; k < K; k++) for (int j = 0; j < N; j++) {
    uint16_t p[3]; split(B[k * N + j], p);
    for (int t = 0; t < TERMS; t++) { int kk = t * K + k; Bp[(kk / 2) * N * 2 + j * 2 + (kk & 1)] = p[b_part[t]]; }
  }
}
static void product(int terms) {
  int kp = terms * K;
  for (int i0 = 0; i0 < M; i0 += 32) for (int j0 = 0; j0 < N; j0 += 32) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int k0 = 0; k0 < kp; k0 += 32) {
      _tile_loadd(4, Ap + i0 * KP + k0, KP * 2);
      _tile_loadd(5, Ap + (i0 + 16) * KP + k0, KP * 2);
      _tile_loadd(6, Bp + (k0 / 2) * N * 2 + j0 * 2, N * 4);
      _tile_loadd(7, Bp + (k0 / 2) * N * 2 + (j0 + 16) * 2, N * 4);
      _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, C + i0 * N + j0, N * 4); _tile_stored(1, C + i0 * N + j0 + 16, N * 4);
    _tile_stored(2, C + (i0 + 16) * N + j0, N * 4); _tile_stored(3, C + (i0 + 16) * N + j0 + 16, N * 4);
  }
}
int main(void) {
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) { perror("arch_prctl (no AMX here)"); return 1; }
  tilecfg cfg; memset(&cfg, 0, sizeof cfg); cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) { cfg.rows[i] = 16; cfg.colsb[i] = 64; }
  _tile_loadconfig(&cfg);
  srand(1);
  for (int i = 0; i < M * K; i++) A[i] = (float)(rand() / (double)RAND_MAX * 2 - 1);
  for (int i = 0; i < K * N; i++) B[i] = (float)(rand() / (double)RAND_MAX * 2 - 1);
  double t = now(); pack(); double t_pack = now() - t;
  tile_pack();
  // Accuracy of 1 (plain bf16), 3 (h·h + h·m + m·h) and 6 terms, and of a plain f32 loop, against f64.
  static float Cs[3][M * N];
  const int kinds[3] = {1, 3, 6};
  for (int v = 0; v < 3; v++) { product(kinds[v]); memcpy(Cs[v], C, sizeof C); }
  double worst[3] = {0}, worst_f32 = 0;
  for (int i = 0; i < M; i++) for (int j = 0; j < N; j++) {
    double ref = 0, scale = 0; float acc = 0;
    for (int k = 0; k < K; k++) { ref += (double)A[i * K + k] * B[k * N + j]; scale += fabs((double)A[i * K + k] * B[k * N + j]); acc += A[i * K + k] * B[k * N + j]; }
    for (int v = 0; v < 3; v++) worst[v] = fmax(worst[v], fabs(Cs[v][i * N + j] - ref) / scale);
    worst_f32 = fmax(worst_f32, fabs(acc - ref) / scale);
  }
  printf("error / sum|terms|, worst of %dx%d outputs (K %d): bf16 %.2e, 3-term split %.2e, 6-term split %.2e, f32 loop %.2e\n", M, N, K, worst[0], worst[1], worst[2], worst_f32);
  for (int v = 0; v < 3; v++) {
    int terms = kinds[v];
    int reps = 2000 / terms; t = now();
    for (int r = 0; r < reps; r++) product(terms);
    double e = (now() - t) / reps;
    printf("%d term(s): %.1f us per %dx%dx%d product = %.0f GFLOP/s of f32 work replaced (tile rate %.0f GFLOP/s), one core\n", terms, e * 1e6, M, N, K,
           2.0 * M * N * K / e / 1e9, 2.0 * M * N * K * terms / e / 1e9);
  }
  for (int v = 0; v < 3; v++) {
    int terms = kinds[v];
    tiled_product(terms);
    double diff = 0;
    product(terms);
    static float Cr[M * N]; memcpy(Cr, C, sizeof C); tiled_product(terms);
    for (int i = 0; i < M * N; i++) diff = fmax(diff, fabs(Cr[i] - C[i]));
    int reps = 2000 / terms; t = now();
    for (int r = 0; r < reps; r++) tiled_product(terms);
    double e = (now() - t) / reps;
    printf("%d term(s), tile-contiguous packing: %.1f us = %.0f GFLOP/s of f32 work replaced (tile rate %.0f), one core (max diff to the other layout %.1e)\n", terms, e * 1e6,
           2.0 * M * N * K / e / 1e9, 2.0 * M * N * K * terms / e / 1e9, diff);
  }
  printf("packing both operands (split + VNNI, scalar C, not tuned): %.1f us\n", t_pack * 1e6);
  _tile_release();
  return 0;
}

// The AVX2 build of the resampler (resample_kernel.h). This whole file is compiled for AVX2 and
// F16C by the pragma below and only called after a runtime CPU check (resize.cpp), so one
// wheel runs everywhere. GCC only: elsewhere avx2_compiled() is false and the portable
// build runs.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx2,f16c")
#define GI_AVX2 1
#include <immintrin.h>
#endif

#include "resample_kernel.h"

namespace gi {

#if GI_AVX2
namespace {

struct Avx2Lanes {
  using I = __m256i;
  using F = __m256;
  static I splat(std::int32_t a) { return _mm256_set1_epi32(a); }
  // acc + per lane r: p[2r] * low weight + p[2r + 1] * high weight (pmaddwd)
  static I madd(I acc, const std::int16_t* p, I w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), w));
  }
  static F normalize(I sum, int bits, F scale, F bias) {
    const I v = _mm256_sra_epi32(sum, _mm_cvtsi32_si128(bits));
    const I clipped = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), _mm256_set1_epi32(255));
    return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(clipped), scale), bias);
  }
  // s[o]: the sums of output o for rows 0..7 (lanes) -> dst[j][offset + 2 * o + b] = row 2j + b,
  // pairs j < npairs. Packed to 16 bits, every 32-bit word is a pair of rows of one output; a
  // 4 x 8 transpose of those words makes each register one pair of rows for outputs 0..7.
  static void store_pairs(const I* s, int bits, std::int16_t* const* dst, int npairs, std::ptrdiff_t offset) {
    const __m128i shift = _mm_cvtsi32_si128(bits);
    const I max = _mm256_set1_epi16(255);  // packus clips below 0, this above 255
    I q[4];  // q[k]: outputs 2k, 2k + 1; low lane pairs (0, 1) and (2, 3), high lane (4, 5) and (6, 7)
    for (int k = 0; k < 4; ++k)
      q[k] = _mm256_min_epu16(_mm256_packus_epi32(_mm256_sra_epi32(s[2 * k], shift), _mm256_sra_epi32(s[2 * k + 1], shift)), max);
    const I t0 = _mm256_unpacklo_epi32(q[0], q[1]), t1 = _mm256_unpackhi_epi32(q[0], q[1]);
    const I t2 = _mm256_unpacklo_epi32(q[2], q[3]), t3 = _mm256_unpackhi_epi32(q[2], q[3]);
    const I u0 = _mm256_unpacklo_epi32(t0, t1), u1 = _mm256_unpackhi_epi32(t0, t1);  // outputs 0-3
    const I v0 = _mm256_unpacklo_epi32(t2, t3), v1 = _mm256_unpackhi_epi32(t2, t3);  // outputs 4-7
    const I pairs[4] = {_mm256_permute2x128_si256(u0, v0, 0x20), _mm256_permute2x128_si256(u1, v1, 0x20),
                        _mm256_permute2x128_si256(u0, v0, 0x31), _mm256_permute2x128_si256(u1, v1, 0x31)};
    for (int j = 0; j < npairs; ++j) _mm256_storeu_si256(reinterpret_cast<I*>(dst[j] + offset), pairs[j]);
  }
  // Pair columns [begin, count) of 8 rows (see PortableLanes), 16 byte columns at a time: rows
  // r and r + 4 share a register (low and high half); two unpacks gather each column's 4 + 4
  // bytes into 32-bit words (four columns a register), the partners cn columns on are the same
  // words shifted across registers (alignr), and interleaving the two and widening to 16 bits
  // gives the pairs.
  static void pair_columns(const std::uint8_t* const* rows, int begin, int count, int avail, int cn,
                           std::int16_t* out) {
    int i = begin;
    if (cn == 3)
      i = pair_run<3>(rows, i, count, avail, out);
    else
      i = pair_run<4>(rows, i, count, avail, out);
    // the rest: whole chunks loading the partners, the last one overlapping where it can
    if (i < count && count - begin >= 16 && count + cn <= avail) {
      for (i = i < count - 16 ? i : count - 16;; i += 16) {
        if (i > count - 16) i = count - 16;
        I a[4], b[4];
        words(rows, i, a);
        words(rows, i + cn, b);
        emit(a, b, out + static_cast<std::size_t>(i) * 16);
        if (i == count - 16) return;
      }
    }
    for (; i + 16 <= count && i + cn + 16 <= avail; i += 16) {
      I a[4], b[4];
      words(rows, i, a);
      words(rows, i + cn, b);
      emit(a, b, out + static_cast<std::size_t>(i) * 16);
    }
    PortableLanes::pair_columns(rows, i, count, avail, cn, out);
  }
  // Chunks from i while the next chunk's words can be read: returns where it stopped.
  template <int Cn>
  static int pair_run(const std::uint8_t* const* rows, int i, int count, int avail, std::int16_t* out) {
    if (i + 16 > count || i + 32 > avail) return i;
    I a[4], next[4], b[4];
    words(rows, i, a);
    for (; i + 16 <= count && i + 32 <= avail; i += 16) {
      words(rows, i + 16, next);
      for (int q = 0; q < 4; ++q) {
        const I after = q < 3 ? a[q + 1] : next[0];
        b[q] = Cn == 4 ? after : _mm256_alignr_epi8(after, a[q], 4 * (Cn & 3));
      }
      emit(a, b, out + static_cast<std::size_t>(i) * 16);
      for (int q = 0; q < 4; ++q) a[q] = next[q];
    }
    return i;
  }
  // b[q]: columns 4q .. 4q + 3 of 16 from column i (32-bit words, rows 0-3 low, 4-7 high)
  static void words(const std::uint8_t* const* rows, int i, I* b) {
    I r[4];
    for (int k = 0; k < 4; ++k)
      r[k] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(rows[k + 4] + i),
                                 reinterpret_cast<const __m128i*>(rows[k] + i));
    const I a0 = _mm256_unpacklo_epi8(r[0], r[1]), a1 = _mm256_unpacklo_epi8(r[2], r[3]);
    const I a2 = _mm256_unpackhi_epi8(r[0], r[1]), a3 = _mm256_unpackhi_epi8(r[2], r[3]);
    b[0] = _mm256_unpacklo_epi16(a0, a1);
    b[1] = _mm256_unpackhi_epi16(a0, a1);
    b[2] = _mm256_unpacklo_epi16(a2, a3);
    b[3] = _mm256_unpackhi_epi16(a2, a3);
  }
  // The pair columns of 16 columns from their words (a) and their partners' (b).
  static void emit(const I* a, const I* b, std::int16_t* out) {
    const I zero = _mm256_setzero_si256();
    I* o = reinterpret_cast<I*>(out);
    for (int q = 0; q < 4; ++q) {
      const I lo = _mm256_unpacklo_epi8(a[q], b[q]), hi = _mm256_unpackhi_epi8(a[q], b[q]);
      _mm256_storeu_si256(o + 4 * q, _mm256_unpacklo_epi8(lo, zero));
      _mm256_storeu_si256(o + 4 * q + 1, _mm256_unpackhi_epi8(lo, zero));
      _mm256_storeu_si256(o + 4 * q + 2, _mm256_unpacklo_epi8(hi, zero));
      _mm256_storeu_si256(o + 4 * q + 3, _mm256_unpackhi_epi8(hi, zero));
    }
  }
  static F fset1(float a) { return _mm256_set1_ps(a); }
  static void store(float* p, F a) { _mm256_storeu_ps(p, a); }
  // p: 32-byte aligned
  static void stream(float* p, F a) { _mm256_stream_ps(p, a); }
  static void stream_low(float* p, F a) { _mm_stream_ps(p, _mm256_castps256_ps128(a)); }
  static void stream_high(float* p, F a) { _mm_stream_ps(p, _mm256_extractf128_ps(a, 1)); }
  // p: 32-byte aligned; p[0..3] = a's high half, p[4..7] = b's low half
  static void stream_join(float* p, F a, F b) { _mm256_stream_ps(p, _mm256_permute2f128_ps(a, b, 0x21)); }
  static void fence() { _mm_sfence(); }
  static void store_n(float* p, F a, int n) {
    alignas(32) float tmp[kLanes];
    _mm256_store_ps(tmp, a);
    std::memcpy(p, tmp, sizeof(float) * n);
  }
  static void store_half(std::uint16_t* p, F a, int n) {
    const __m128i h = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (n == kLanes) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
      return;
    }
    alignas(16) std::uint16_t tmp[kLanes];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), h);
    std::memcpy(p, tmp, sizeof(std::uint16_t) * n);
  }
};

}  // namespace

bool avx2_compiled() { return true; }

void resample_rows_avx2(const ResampleTask& t, int y0, int y1, void* scratch) {
  Resampler<Avx2Lanes>(t, scratch).run(y0, y1);
}

#else

bool avx2_compiled() { return false; }

void resample_rows_avx2(const ResampleTask& t, int y0, int y1, void* scratch) {
  resample_rows_portable(t, y0, y1, scratch);
}

#endif

}  // namespace gi

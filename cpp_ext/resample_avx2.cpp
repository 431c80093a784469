// The AVX2 build of the resampler (resample_kernel.h). This whole file is compiled for AVX2, FMA
// and F16C by the pragma below and only called after a runtime CPU check (resize.cpp), so one
// wheel runs everywhere. GCC only: elsewhere avx2_compiled() is false and the portable
// build runs.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx2,fma,f16c")
#define GI_AVX2 1
#include <immintrin.h>
#endif

#include "resample_kernel.h"

namespace gi {

#if GI_AVX2
namespace {

struct Avx2Lanes {
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V a) { _mm256_storeu_ps(p, a); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V round_clip(V a) {
    const V x = _mm256_add_ps(a, _mm256_set1_ps(0.5f));
    return _mm256_floor_ps(_mm256_min_ps(_mm256_max_ps(x, _mm256_setzero_ps()), _mm256_set1_ps(255.5f)));
  }
  static void store_n(float* p, V a, int n) {
    if (n == kLanes) {
      _mm256_storeu_ps(p, a);
      return;
    }
    alignas(32) float tmp[kLanes];
    _mm256_store_ps(tmp, a);
    std::memcpy(p, tmp, sizeof(float) * n);
  }
  static void store_half(std::uint16_t* p, V a, int n) {
    const __m128i h = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (n == kLanes) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
      return;
    }
    alignas(16) std::uint16_t tmp[kLanes];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), h);
    std::memcpy(p, tmp, sizeof(std::uint16_t) * n);
  }
  static void transpose8(V* v) {
    const V t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const V t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const V t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const V t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const V s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const V s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const V s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const V s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
  }
  // 8 rows x count bytes -> out[i * 8 + r] = float(rows[r][i]), 8x8 byte tiles via SSE unpacks
  static void transpose_bytes(const std::uint8_t* const* rows, int count, float* out) {
    int i = 0;
    for (; i + 8 <= count; i += 8) {
      __m128i r[kLanes];
      for (int k = 0; k < kLanes; ++k) r[k] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rows[k] + i));
      const __m128i a0 = _mm_unpacklo_epi8(r[0], r[1]), a1 = _mm_unpacklo_epi8(r[2], r[3]);
      const __m128i a2 = _mm_unpacklo_epi8(r[4], r[5]), a3 = _mm_unpacklo_epi8(r[6], r[7]);
      const __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
      const __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
      const __m128i c[4] = {_mm_unpacklo_epi32(b0, b2), _mm_unpackhi_epi32(b0, b2),
                            _mm_unpacklo_epi32(b1, b3), _mm_unpackhi_epi32(b1, b3)};
      float* o = out + static_cast<std::size_t>(i) * kLanes;
      for (int k = 0; k < 4; ++k) {  // c[k] holds columns 2k (low 8 bytes) and 2k + 1
        _mm256_storeu_ps(o + 16 * k, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c[k])));
        _mm256_storeu_ps(o + 16 * k + 8, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c[k], 8))));
      }
    }
    for (; i < count; ++i)
      for (int r = 0; r < kLanes; ++r) out[static_cast<std::size_t>(i) * kLanes + r] = rows[r][i];
  }
};

}  // namespace

bool avx2_compiled() { return true; }

void resample_rows_avx2(const ResampleTask& t, int y0, int y1, float* scratch) {
  Resampler<Avx2Lanes>(t, scratch).run(y0, y1);
}

#else

bool avx2_compiled() { return false; }

void resample_rows_avx2(const ResampleTask& t, int y0, int y1, float* scratch) {
  resample_rows_portable(t, y0, y1, scratch);
}

#endif

}  // namespace gi

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
  // p: 16-byte aligned
  static void stream(float* p, V a) {
    if ((reinterpret_cast<std::uintptr_t>(p) & 31) == 0) {
      _mm256_stream_ps(p, a);
      return;
    }
    _mm_stream_ps(p, _mm256_castps256_ps128(a));
    _mm_stream_ps(p + 4, _mm256_extractf128_ps(a, 1));
  }
  static void fence() { _mm_sfence(); }
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
  // m: 8 x 8 floats, row-major; v[r] = column r of m. The first step of the usual 8 x 8
  // transpose (swapping 128-bit halves) is done by the loads.
  static void transpose8(const float* m, V* v) {
    V r[kLanes];
    for (int k = 0; k < 4; ++k) {
      const float *top = m + k * kLanes, *bottom = m + (k + 4) * kLanes;
      r[k] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(top)), _mm_loadu_ps(bottom), 1);
      r[k + 4] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(top + 4)), _mm_loadu_ps(bottom + 4), 1);
    }
    const V t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const V t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const V t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const V t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    v[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    v[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    v[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    v[4] = _mm256_shuffle_ps(t4, t6, 0x44);
    v[5] = _mm256_shuffle_ps(t4, t6, 0xEE);
    v[6] = _mm256_shuffle_ps(t5, t7, 0x44);
    v[7] = _mm256_shuffle_ps(t5, t7, 0xEE);
  }
  // 8 rows x count bytes -> out[i * 8 + r] = float(rows[r][i]), 16 columns at a time: rows r
  // and r + 4 share a register (low and high half), two unpacks gather each column's 4 + 4
  // bytes into 32-bit words, and one byte shuffle per column spreads them to 8 lanes.
  static void transpose_bytes(const std::uint8_t* const* rows, int count, float* out) {
    if (count < 16) {
      PortableLanes::transpose_bytes(rows, count, out);
      return;
    }
    const __m256i spread[4] = {
        _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1,
                         0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1),
        _mm256_setr_epi8(4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1, -1, -1,
                         4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1, -1, -1),
        _mm256_setr_epi8(8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1,
                         8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1),
        _mm256_setr_epi8(12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1, -1, -1,
                         12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1, -1, -1)};
    for (int i = 0;; i += 16) {
      if (i > count - 16) i = count - 16;  // the last 16 columns, overlapping the previous ones
      __m256i r[4];
      for (int k = 0; k < 4; ++k) {
        const __m128i top = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k] + i));
        const __m128i bottom = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[k + 4] + i));
        r[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(top), bottom, 1);
      }
      const __m256i a0 = _mm256_unpacklo_epi8(r[0], r[1]), a1 = _mm256_unpacklo_epi8(r[2], r[3]);
      const __m256i a2 = _mm256_unpackhi_epi8(r[0], r[1]), a3 = _mm256_unpackhi_epi8(r[2], r[3]);
      const __m256i b[4] = {_mm256_unpacklo_epi16(a0, a1), _mm256_unpackhi_epi16(a0, a1),
                            _mm256_unpacklo_epi16(a2, a3), _mm256_unpackhi_epi16(a2, a3)};
      float* o = out + static_cast<std::size_t>(i) * kLanes;
      for (int q = 0; q < 4; ++q)  // b[q]: columns 4q .. 4q + 3, rows 0-3 low, 4-7 high
        for (int j = 0; j < 4; ++j)
          _mm256_storeu_ps(o + (4 * q + j) * kLanes, _mm256_cvtepi32_ps(_mm256_shuffle_epi8(b[q], spread[j])));
      if (i == count - 16) break;
    }
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

// The separable resampler behind gi_sdk.preprocess, written once over a "lanes" type (8 floats)
// and compiled by resize.cpp (portable lanes: plain C++) and resample_avx2.cpp (AVX2 lanes).
//
// Order of work, per thread and band of output rows:
//   1. 8 input rows at a time, one column tile at a time (t.tile outputs, 64 for 1080p: the
//      tile's input stays in the level-1 cache): the input bytes are transposed and converted
//      to float, lane r = row r (16 columns per step: two unpacks and one byte shuffle each);
//   2. the horizontal pass runs on those 8 rows at once: four outputs x three channels =
//      twelve chains of fused multiply-adds, one broadcast weight per output and tap, the
//      input read from memory by the multiply-adds themselves; the sums are rounded and
//      clipped to 0..255 like Pillow's 8-bit intermediate image, and 8x8 transposes put them
//      into a ring of planar rows;
//   3. each output row whose input rows are in the ring: the vertical pass (eight vectors of
//      a row at a time) rounds and clips again, normalizes and stores CHW - a large float32
//      output with non-temporal stores, which skip reading the old output into the caches.
// Every sum is a chain of fused multiply-adds in tap order. Weights are >= 2^-20 and pixels
// are integers 0..255, so each a * b + c is exact in double precision: the numpy twin gets the
// very same float32 values by computing float32(double(a) * b + c), step by step.
//
// Everything here has internal linkage and uses no standard-library templates: each build
// keeps its own copy, compiled for its own instruction set (see resample_task.h).
#pragma once
#include <cstdint>
#include <cstring>

#include "resample_task.h"

namespace gi {
namespace {

constexpr int kLanes = 8;

inline int imin(int a, int b) { return a < b ? a : b; }
inline int round_up8(int v) { return (v + 7) & ~7; }

// A hint to load the cache line at p (never faults).
inline void prefetch(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

// float32 -> float16 bits, round to nearest even: numpy's npy_floatbits_to_halfbits.
inline std::uint16_t half_bits(float value) {
  std::uint32_t f;
  std::memcpy(&f, &value, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((f & 0x80000000u) >> 16);
  std::uint32_t exp = f & 0x7f800000u, sig;
  if (exp >= 0x47800000u) {
    if (exp == 0x7f800000u && (f & 0x007fffffu)) {
      std::uint16_t nan = static_cast<std::uint16_t>(0x7c00u + ((f & 0x007fffffu) >> 13));
      return static_cast<std::uint16_t>(sign + (nan == 0x7c00u ? nan + 1 : nan));
    }
    return static_cast<std::uint16_t>(sign + 0x7c00u);
  }
  if (exp <= 0x38000000u) {
    if (exp < 0x33000000u) return sign;
    exp >>= 23;
    sig = 0x00800000u + (f & 0x007fffffu);
    sig >>= (113 - exp);
    if (((sig & 0x00003fffu) != 0x00001000u) || (f & 0x000007ffu)) sig += 0x00001000u;
    return static_cast<std::uint16_t>(sign + (sig >> 13));
  }
  const std::uint32_t hexp = (exp - 0x38000000u) >> 13;
  sig = f & 0x007fffffu;
  if ((sig & 0x00003fffu) != 0x00001000u) sig += 0x00001000u;
  return static_cast<std::uint16_t>(sign + hexp + (sig >> 13));
}

template <class L>
class Resampler {
 public:
  using V = typename L::V;

  Resampler(const ResampleTask& t, float* scratch)
      : t_(t),
        pad_w_(round_up8(t.out_w)),
        ring_rows_(t.ay.taps + kLanes),
        row_floats_(3 * round_up8(t.out_w)),
        tile_(scratch),
        block_(tile_ + 3 * kLanes * kLanes),
        ring_(block_ + block_floats(t)) {}

  // Floats of the per-thread scratch: a 3 x 8 x 8 tile, the transposed input of one column
  // tile, and the ring of resampled rows.
  static std::size_t scratch_size(const ResampleTask& t) {
    return 3 * kLanes * kLanes + block_floats(t) +
           static_cast<std::size_t>(t.ay.taps + kLanes) * 3 * round_up8(t.out_w);
  }

  void run(int y0, int y1) {
    const int last_needed = t_.ay.start[y1 - 1] + t_.ay.taps;  // one past the last input row
    int next = t_.ay.start[y0];                                 // first row not yet resampled
    for (int y = y0; y < y1; ++y) {
      const int need = t_.ay.start[y] + t_.ay.taps;
      while (next < need) {
        const int n = imin(kLanes, last_needed - next);
        horizontal(next, n);
        next += n;
      }
      if (t_.half)
        vertical<true>(y);
      else
        vertical<false>(y);
    }
    L::fence();  // the non-temporal stores are visible to every thread when this returns
  }

 private:
  // Floats of the widest column tile's transposed input: input columns x channels x 8 rows.
  static std::size_t block_floats(const ResampleTask& t) {
    int widest = 0;
    for (int x = 0; x < t.out_w; x += t.tile) {
      const int last = imin(x + t.tile, t.out_w) - 1;
      const int span = t.ax.start[last] + t.ax.taps - t.ax.start[x];
      widest = span > widest ? span : widest;
    }
    return static_cast<std::size_t>(widest) * t.channels * kLanes;
  }

  float* slot(int row) { return ring_ + static_cast<std::size_t>(row % ring_rows_) * row_floats_; }

  // The input bytes of the column tile at output column xt, rows row0 .. row0 + 7, asked for
  // ahead of their use a few rows at a time.
  class InputRows {
   public:
    InputRows(const ResampleTask& t, int row0, int xt) : t_(t), row_(row0), end_(imin(row0 + kLanes, t.in_h)) {
      const int xe = imin(xt + t.tile, t.out_w), first = t.ax.start[xt];
      bytes_ = (t.ax.start[xe - 1] + t.ax.taps - first) * t.channels;
      offset_ = static_cast<std::ptrdiff_t>(first) * t.channels;
    }
    void prefetch(int rows) {
      for (; rows > 0 && row_ < end_; --rows, ++row_) {
        const std::uint8_t* p = t_.src + static_cast<std::ptrdiff_t>(row_) * t_.src_stride + offset_;
        for (int b = 0; b < bytes_; b += 64) gi::prefetch(p + b);
      }
    }

   private:
    const ResampleTask& t_;
    int row_, end_, bytes_;
    std::ptrdiff_t offset_;
  };

  // Input rows [row0, row0 + n), n <= 8, resampled along x into the ring, one column tile at
  // a time.
  void horizontal(int row0, int n) {
    const int taps = t_.ax.taps, cn = t_.channels;
    const std::ptrdiff_t step = static_cast<std::ptrdiff_t>(cn) * kLanes;  // floats per input pixel
    float* dst[kLanes];
    for (int r = 0; r < n; ++r) dst[r] = slot(row0 + r);
    for (int xt = 0; xt < t_.out_w; xt += t_.tile) {
      const int xe = imin(xt + t_.tile, t_.out_w);
      const int first = t_.ax.start[xt], span = t_.ax.start[xe - 1] + taps - first;
      const std::uint8_t* rows[kLanes];
      for (int r = 0; r < kLanes; ++r)  // short blocks repeat their last row: computed, not stored
        rows[r] = t_.src + static_cast<std::ptrdiff_t>(row0 + imin(r, n - 1)) * t_.src_stride + first * cn;
      L::transpose_bytes(rows, span * cn, block_);
      // the next tile's input (or the next pass's first), asked for two rows per 8 outputs
      // while this tile computes: the memory then delivers it in time, at an even pace
      InputRows ahead(t_, xe < t_.out_w ? row0 : row0 + n, xe < t_.out_w ? xe : 0);
      const float* pixels = block_ - first * step;  // pixels + x * step: input column x
      for (int xb = xt; xb < xe; xb += kLanes) {
        ahead.prefetch(xb + kLanes >= xe ? kLanes : 2);
        for (int j = 0; j < kLanes; j += 4) {
          // outputs xb + j .. xb + j + 3: twelve independent sums, enough to keep two fused
          // multiply-adds in flight per cycle (4 cycles of latency)
          const int g = (xb + j) / 4;
          const int* at = t_.ax.group_at + 5 * g;
          const float* w = t_.ax.grouped + static_cast<std::size_t>(g) * taps * 4;  // [k][i]
          const float* p = pixels + at[0] * step;
          const std::ptrdiff_t d1 = at[2] * step, d2 = at[3] * step, d3 = at[4] * step;
          const float *q0 = p + t_.map[0] * kLanes, *q1 = p + t_.map[1] * kLanes, *q2 = p + t_.map[2] * kLanes;
          V a0 = L::zero(), a1 = L::zero(), a2 = L::zero(), b0 = L::zero(), b1 = L::zero(), b2 = L::zero();
          V c0 = L::zero(), c1 = L::zero(), c2 = L::zero(), e0 = L::zero(), e1 = L::zero(), e2 = L::zero();
          for (int k = 0; k < taps; ++k, q0 += step, q1 += step, q2 += step, w += 4) {
            V wk = L::set1(w[0]);
            a0 = L::fma(wk, L::load(q0), a0);
            a1 = L::fma(wk, L::load(q1), a1);
            a2 = L::fma(wk, L::load(q2), a2);
            wk = L::set1(w[1]);
            b0 = L::fma(wk, L::load(q0 + d1), b0);
            b1 = L::fma(wk, L::load(q1 + d1), b1);
            b2 = L::fma(wk, L::load(q2 + d1), b2);
            wk = L::set1(w[2]);
            c0 = L::fma(wk, L::load(q0 + d2), c0);
            c1 = L::fma(wk, L::load(q1 + d2), c1);
            c2 = L::fma(wk, L::load(q2 + d2), c2);
            wk = L::set1(w[3]);
            e0 = L::fma(wk, L::load(q0 + d3), e0);
            e1 = L::fma(wk, L::load(q1 + d3), e1);
            e2 = L::fma(wk, L::load(q2 + d3), e2);
          }
          float* tile = tile_ + j * kLanes;  // [plane][x][lane]
          const V sums[3][4] = {{a0, b0, c0, e0}, {a1, b1, c1, e1}, {a2, b2, c2, e2}};
          for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 4; ++i) L::store(tile + (c * kLanes + i) * kLanes, L::round_clip(sums[c][i]));
        }
        // lanes are rows: transpose each plane's 8 x 8 tile into 8 ring rows
        for (int c = 0; c < 3; ++c) {
          V v[kLanes];
          L::transpose8(tile_ + c * kLanes * kLanes, v);
          for (int r = 0; r < n; ++r) L::store(dst[r] + c * pad_w_ + xb, v[r]);
        }
      }
    }
  }

  // Output row y from the ring: vertical taps, round and clip, then normalize into CHW.
  template <bool Half>
  void vertical(int y) {
    const int taps = t_.ay.taps, s = t_.ay.start[y];
    const float* w = t_.ay.weights + static_cast<std::size_t>(y) * taps;
    // taps grows with the shrink factor (25 for 8K -> 768); past 64 (a 20x shrink) the ring
    // row of each tap is looked up per use instead of once per output row
    const float* rows[64];
    const bool cached = taps <= 64;
    if (cached)
      for (int k = 0; k < taps; ++k) rows[k] = slot(s + k);
    const std::size_t plane = static_cast<std::size_t>(t_.out_h) * t_.out_w;
    const int whole = t_.out_w / (8 * kLanes) * (8 * kLanes);  // columns in whole chunks of 8 vectors
    for (int c = 0; c < 3; ++c) {
      const V scale = L::set1(t_.scale[c]), bias = L::set1(t_.bias[c]);
      const std::size_t at = c * plane + static_cast<std::size_t>(y) * t_.out_w;
      const int col = c * pad_w_;
      // non-temporal stores take 16-byte aligned addresses: the row's start decides
      const bool stream =
          !Half && t_.stream && (reinterpret_cast<std::uintptr_t>(static_cast<float*>(t_.out) + at) & 15) == 0;
      int x = 0;
      for (; x < whole; x += 8 * kLanes) {
        // eight independent sums (each added in tap order) keep two fused multiply-adds in
        // flight per cycle
        V a0 = L::zero(), a1 = L::zero(), a2 = L::zero(), a3 = L::zero();
        V a4 = L::zero(), a5 = L::zero(), a6 = L::zero(), a7 = L::zero();
        for (int k = 0; k < taps; ++k) {
          const float* row = (cached ? rows[k] : slot(s + k)) + col + x;
          const V wk = L::set1(w[k]);
          a0 = L::fma(wk, L::load(row + 0 * kLanes), a0);
          a1 = L::fma(wk, L::load(row + 1 * kLanes), a1);
          a2 = L::fma(wk, L::load(row + 2 * kLanes), a2);
          a3 = L::fma(wk, L::load(row + 3 * kLanes), a3);
          a4 = L::fma(wk, L::load(row + 4 * kLanes), a4);
          a5 = L::fma(wk, L::load(row + 5 * kLanes), a5);
          a6 = L::fma(wk, L::load(row + 6 * kLanes), a6);
          a7 = L::fma(wk, L::load(row + 7 * kLanes), a7);
        }
        const V sums[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        for (int j = 0; j < 8; ++j) {
          const V value = L::add(L::mul(L::round_clip(sums[j]), scale), bias);
          const int xj = x + j * kLanes;
          if (Half)
            L::store_half(static_cast<std::uint16_t*>(t_.out) + at + xj, value, kLanes);
          else if (stream)
            L::stream(static_cast<float*>(t_.out) + at + xj, value);
          else
            L::store(static_cast<float*>(t_.out) + at + xj, value);
        }
      }
      for (; x < t_.out_w; x += kLanes) {  // the rest, one vector at a time
        V sum = L::zero();
        for (int k = 0; k < taps; ++k)
          sum = L::fma(L::set1(w[k]), L::load((cached ? rows[k] : slot(s + k)) + col + x), sum);
        const V value = L::add(L::mul(L::round_clip(sum), scale), bias);
        const int n = imin(kLanes, t_.out_w - x);
        if (Half)
          L::store_half(static_cast<std::uint16_t*>(t_.out) + at + x, value, n);
        else
          L::store_n(static_cast<float*>(t_.out) + at + x, value, n);
      }
    }
  }

  const ResampleTask& t_;
  const int pad_w_, ring_rows_, row_floats_;
  float* tile_;    // 8 horizontal results of 8 rows per plane: [plane][x][lane]
  float* block_;   // transposed input of one column tile: [column][lane]
  float* ring_;    // resampled rows, planar: [row % ring_rows][plane * pad_w + x]
};

// Scalar lanes: the portable build, and the reference the AVX2 lanes must equal.
struct PortableLanes {
  struct V {
    float v[kLanes];
  };
  static V zero() { return set1(0.0f); }
  static V set1(float a) {
    V r;
    for (float& x : r.v) x = a;
    return r;
  }
  static V load(const float* p) {
    V r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, const V& a) { std::memcpy(p, a.v, sizeof a.v); }
  static void stream(float* p, const V& a) { store(p, a); }
  static void fence() {}
  static void store_n(float* p, const V& a, int n) { std::memcpy(p, a.v, sizeof(float) * n); }
  static void store_half(std::uint16_t* p, const V& a, int n) {
    for (int i = 0; i < n; ++i) p[i] = half_bits(a.v[i]);
  }
  static V add(const V& a, const V& b) {
    V r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static V mul(const V& a, const V& b) {
    V r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = a.v[i] * b.v[i];
    return r;
  }
  // a * b + c rounded once: exact in double for the kernels' operands (see the top of the file)
  static V fma(const V& a, const V& b, const V& c) {
    V r;
    for (int i = 0; i < kLanes; ++i)
      r.v[i] = static_cast<float>(static_cast<double>(a.v[i]) * b.v[i] + c.v[i]);
    return r;
  }
  // floor(min(max(x + 0.5, 0), 255.5)): PIL's round-half-up then clip to 0..255
  static V round_clip(const V& a) {
    V r;
    for (int i = 0; i < kLanes; ++i) {
      float x = a.v[i] + 0.5f;
      x = x > 0.0f ? x : 0.0f;
      x = x < 255.5f ? x : 255.5f;
      r.v[i] = static_cast<float>(static_cast<int>(x));  // x >= 0: truncation is floor
    }
    return r;
  }
  // m: 8 x 8 floats, row-major; v[r] = column r of m
  static void transpose8(const float* m, V* v) {
    for (int r = 0; r < kLanes; ++r)
      for (int j = 0; j < kLanes; ++j) v[r].v[j] = m[j * kLanes + r];
  }
  // 8 rows x count bytes -> out[i * 8 + r] = float(rows[r][i])
  static void transpose_bytes(const std::uint8_t* const* rows, int count, float* out) {
    for (int i = 0; i < count; ++i)
      for (int r = 0; r < kLanes; ++r) out[static_cast<std::size_t>(i) * kLanes + r] = rows[r][i];
  }
};

}  // namespace
}  // namespace gi

// The separable resampler behind gi_sdk.preprocess, written once over a "lanes" type (8 floats)
// and compiled by resize.cpp (portable lanes: plain C++) and resample_avx2.cpp (AVX2 lanes).
//
// Order of work, per thread and band of output rows:
//   1. 8 input rows at a time are converted to float and transposed, so lane r = row r
//      (per column tile of 64 outputs, so the transposed input stays in L1);
//   2. the horizontal pass runs on those 8 rows at once (one broadcast weight, 8 rows per
//      multiply-add), rounds and clips to 0..255 like Pillow's 8-bit intermediate image, and
//      8x8 transposes put the results into a ring of planar rows;
//   3. the vertical pass reads the ring, rounds and clips again, normalizes and stores CHW.
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
        quad_(tile_ + 3 * kLanes * kLanes),
        block_(quad_ + quad_floats(t)),
        ring_(block_ + block_floats(t)) {
    // horizontal weights regrouped by 4 outputs, [group][tap][i], so one pointer walks them;
    // outputs past the end repeat the last one (computed, never stored)
    const int taps = t.ax.taps;
    for (int g = 0; g < (t.out_w + 3) / 4; ++g)
      for (int k = 0; k < taps; ++k)
        for (int i = 0; i < 4; ++i) {
          const int x = imin(4 * g + i, t.out_w - 1);
          quad_[(static_cast<std::size_t>(g) * taps + k) * 4 + i] = t.ax.weights[static_cast<std::size_t>(x) * taps + k];
        }
  }

  // Floats of the per-thread scratch: a 3 x 8 x 8 tile, the regrouped horizontal weights, the
  // transposed input of one column tile, and the ring of resampled rows.
  static std::size_t scratch_size(const ResampleTask& t) {
    return 3 * kLanes * kLanes + quad_floats(t) + block_floats(t) +
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
      vertical(y);
    }
  }

 private:
  // Outputs per column tile: its transposed input (~16 KB at a 2.5x shrink) stays in L1.
  static constexpr int kTile = 64;
  // Vectors of one output row summed together by the vertical pass.
  static constexpr int kChunk = 8;

  static std::size_t quad_floats(const ResampleTask& t) {
    return static_cast<std::size_t>((t.out_w + 3) / 4) * t.ax.taps * 4;
  }

  static std::size_t block_floats(const ResampleTask& t) {
    int widest = 0;
    for (int x = 0; x < t.out_w; x += kTile) {
      const int last = imin(x + kTile, t.out_w) - 1;
      const int span = t.ax.start[last] + t.ax.taps - t.ax.start[x];
      widest = span > widest ? span : widest;
    }
    return static_cast<std::size_t>(widest) * t.channels * kLanes;
  }

  float* slot(int row) { return ring_ + static_cast<std::size_t>(row % ring_rows_) * row_floats_; }

  // Input rows [row0, row0 + n), n <= 8, resampled along x into the ring, one column tile at
  // a time.
  void horizontal(int row0, int n) {
    const int taps = t_.ax.taps, cn = t_.channels;
    const int m0 = t_.map[0] * kLanes, m1 = t_.map[1] * kLanes, m2 = t_.map[2] * kLanes;
    const std::uint8_t* rows[kLanes];
    float* dst[kLanes];
    for (int r = 0; r < kLanes; ++r) dst[r] = slot(row0 + imin(r, n - 1));
    for (int xt = 0; xt < t_.out_w; xt += kTile) {
      const int xe = imin(xt + kTile, t_.out_w);
      const int first = t_.ax.start[xt], span = t_.ax.start[xe - 1] + taps - first;
      for (int r = 0; r < kLanes; ++r)  // short blocks repeat their last row: computed, not stored
        rows[r] = t_.src + static_cast<std::ptrdiff_t>(row0 + imin(r, n - 1)) * t_.src_stride + first * cn;
      L::transpose_bytes(rows, span * cn, block_);
      for (int xb = xt; xb < xe; xb += kLanes) {
        // four outputs at a time: twelve independent sums, enough to cover the latency of a
        // fused multiply-add (4 cycles) at two per cycle
        for (int j = 0; j < kLanes; j += 4) {
          const int x0 = imin(xb + j, t_.out_w - 1);
          const float* w = quad_ + static_cast<std::size_t>(x0 / 4) * taps * 4;  // [k][i]
          const float* p = block_ + static_cast<std::size_t>(t_.ax.start[x0] - first) * cn * kLanes;
          std::ptrdiff_t d[4];
          for (int i = 0; i < 4; ++i)
            d[i] = static_cast<std::ptrdiff_t>(t_.ax.start[imin(x0 + i, t_.out_w - 1)] - t_.ax.start[x0]) * cn * kLanes;
          V a[4][3];
          for (auto& ai : a) ai[0] = ai[1] = ai[2] = L::zero();
          // three walking pointers (one per plane) plus three offsets: few enough registers
          const float *q0 = p + m0, *q1 = p + m1, *q2 = p + m2;
          const std::ptrdiff_t step = cn * kLanes;
          for (int k = 0; k < taps; ++k, q0 += step, q1 += step, q2 += step, w += 4) {
            for (int i = 0; i < 4; ++i) {
              const V wk = L::set1(w[i]);
              a[i][0] = L::fma(wk, L::load(q0 + d[i]), a[i][0]);
              a[i][1] = L::fma(wk, L::load(q1 + d[i]), a[i][1]);
              a[i][2] = L::fma(wk, L::load(q2 + d[i]), a[i][2]);
            }
          }
          for (int i = 0; i < 4; ++i)
            for (int c = 0; c < 3; ++c) L::store(tile_ + (c * kLanes + j + i) * kLanes, L::round_clip(a[i][c]));
        }
        // lanes are rows: transpose each plane's 8 x 8 tile into 8 ring rows
        for (int c = 0; c < 3; ++c) {
          V v[kLanes];
          for (int j = 0; j < kLanes; ++j) v[j] = L::load(tile_ + (c * kLanes + j) * kLanes);
          L::transpose8(v);
          for (int r = n - 1; r >= 0; --r) L::store(dst[r] + c * pad_w_ + xb, v[r]);
        }
      }
    }
  }

  // Output row y from the ring: vertical taps, round and clip, then normalize into CHW.
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
    for (int c = 0; c < 3; ++c) {
      const V scale = L::set1(t_.scale[c]), bias = L::set1(t_.bias[c]);
      const std::size_t at = c * plane + static_cast<std::size_t>(y) * t_.out_w;
      // eight vectors at a time: independent sums (each still added in tap order) keep two
      // fused multiply-adds in flight per cycle
      for (int x = 0; x < t_.out_w; x += kChunk * kLanes) {
        const int col = c * pad_w_ + x;
        const int vectors = imin(kChunk, (t_.out_w - x + kLanes - 1) / kLanes);
        V acc[kChunk];
        for (V& v : acc) v = L::zero();
        if (vectors == kChunk) {
          for (int k = 0; k < taps; ++k) {
            const float* row = (cached ? rows[k] : slot(s + k)) + col;
            const V wk = L::set1(w[k]);
            for (int j = 0; j < kChunk; ++j) acc[j] = L::fma(wk, L::load(row + j * kLanes), acc[j]);
          }
        } else {
          for (int j = 0; j < vectors; ++j)
            for (int k = 0; k < taps; ++k) {
              const float* row = (cached ? rows[k] : slot(s + k)) + col + j * kLanes;
              acc[j] = L::fma(L::set1(w[k]), L::load(row), acc[j]);
            }
        }
        for (int j = 0; j < vectors; ++j) {
          const V value = L::add(L::mul(L::round_clip(acc[j]), scale), bias);
          const int n = imin(kLanes, t_.out_w - x - j * kLanes);
          if (t_.half)
            L::store_half(static_cast<std::uint16_t*>(t_.out) + at + x + j * kLanes, value, n);
          else
            L::store_n(static_cast<float*>(t_.out) + at + x + j * kLanes, value, n);
        }
      }
    }
  }

  const ResampleTask& t_;
  const int pad_w_, ring_rows_, row_floats_;
  float* tile_;    // 8 horizontal results of 8 rows per plane: [plane][x][lane]
  float* quad_;    // horizontal weights by groups of 4 outputs: [group][tap][i]
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
  static void transpose8(V* v) {
    for (int i = 0; i < kLanes; ++i)
      for (int j = i + 1; j < kLanes; ++j) {
        const float t = v[i].v[j];
        v[i].v[j] = v[j].v[i];
        v[j].v[i] = t;
      }
  }
  static void transpose_bytes(const std::uint8_t* const* rows, int count, float* out) {
    for (int i = 0; i < count; ++i)
      for (int r = 0; r < kLanes; ++r) out[static_cast<std::size_t>(i) * kLanes + r] = rows[r][i];
  }
};

}  // namespace
}  // namespace gi

// The separable resampler behind gi_sdk.preprocess, written once over a "lanes" type and
// compiled by resize.cpp (portable lanes: plain C++) and resample_avx2.cpp (AVX2 lanes).
//
// Arithmetic: 16-bit fixed point, as Pillow-SIMD resamples 8-bit images. Weights are int16
// with `bits` fraction bits per axis (make_axis), pixels 0..255; each pass sums
// 2^(bits-1) + sum(weight * pixel) in int32 and keeps clip(sum >> bits, 0, 255) - Pillow's
// 8-bit intermediate image after the horizontal pass, the output value after the vertical
// one, which is then normalized in float32 as value * scale + bias. Integer sums are exact in
// any order, so the numpy twin (preprocessing.preprocess_numpy) gets the same bits.
//
// Order of work, per thread and band of output rows:
//   1. 8 input rows at a time, one column tile at a time (t.tile outputs, 64 for 1080p: the
//      tile's input stays in the level-1 cache): the input bytes are transposed into "pair
//      columns": for every input byte column i, 8 rows x (byte i, byte i + channels) as int16,
//      i.e. each pixel next to its right neighbour of the same colour, lane r = row r;
//   2. the horizontal pass runs on those 8 rows at once: four outputs x three channels =
//      twelve int32 sums, each step one 16-bit multiply-add of two taps x 8 rows (pmaddwd)
//      with one broadcast weight pair per output, the pair column read from memory; the sums
//      are rounded, clipped to 0..255 and transposed into a ring that keeps the resampled rows
//      two by two, planar: rows 2m and 2m + 1 interleaved, column by column, so that
//   3. each output row whose input rows are in the ring takes its vertical taps as whole pairs
//      of rows (its window starts at an even row, AxisView): one multiply-add per pair and 8
//      columns, 32 columns at a time; the sums are rounded, clipped, normalized in float32 and
//      stored CHW - a large float32 output with non-temporal stores, which skip reading the
//      old output into the caches.
//
// Everything here has internal linkage and uses no standard-library templates: each build
// keeps its own copy, compiled for its own instruction set (see resample_task.h).
#pragma once
#include <cstdint>
#include <cstring>

#include "resample_task.h"

namespace gi {
namespace {

constexpr int kLanes = 8;  // input rows per horizontal pass: one int32 sum lane each

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }
inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

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

// The two int16 weights of a pair word (see AxisView).
inline int low_weight(std::int32_t pair) { return static_cast<std::int16_t>(static_cast<std::uint32_t>(pair) & 0xffffu); }
inline int high_weight(std::int32_t pair) { return static_cast<std::int16_t>(static_cast<std::uint32_t>(pair) >> 16); }

// clip(sum >> bits, 0, 255): Pillow's clip8 (>> of a negative int is a floor, as in Pillow)
inline int clip8(std::int32_t sum, int bits) {
  const std::int32_t v = sum >> bits;
  return v < 0 ? 0 : (v > 255 ? 255 : static_cast<int>(v));
}

template <class L>
class Resampler {
 public:
  using I = typename L::I;  // 8 int32 sums
  using F = typename L::F;  // 8 floats

  Resampler(const ResampleTask& t, void* scratch)
      : t_(t),
        pad_w_(round_up(t.out_w, kLanes)),
        ring_pairs_(ring_pairs(t)),
        block_(static_cast<std::int16_t*>(scratch)),
        ring_(block_ + block_values(t)) {}

  // Bytes of the per-thread scratch (64-byte multiple): the pair columns of the widest column
  // tile, and the ring of resampled rows.
  static std::size_t scratch_size(const ResampleTask& t) {
    const std::size_t ring = static_cast<std::size_t>(ring_pairs(t)) * 3 * 2 * round_up(t.out_w, kLanes);
    return ((block_values(t) + ring) * sizeof(std::int16_t) + 63) / 64 * 64;
  }

  void run(int y0, int y1) {
    const AxisView& ay = t_.ay;
    int last_needed = 0;  // one past the last input row of the band
    for (int y = y0; y < y1; ++y) last_needed = imax(last_needed, need(y));
    int next = ay.pair_start[y0];  // first row not yet resampled (even: passes fill whole pairs)
    for (int y = y0; y < y1; ++y) {
      while (next < need(y)) {
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
  // Input pixels of the column tile at output xt with a pair column (a tap pair starts there).
  static int tile_pixels(const ResampleTask& t, int xt) {
    const int xe = imin(xt + t.tile, t.out_w);
    return t.ax.start[xe - 1] + t.ax.taps - 1 - t.ax.start[xt];
  }

  // int16 values of the widest column tile's pair columns (16 per input byte), a multiple of 32.
  static std::size_t block_values(const ResampleTask& t) {
    int widest = 0;
    for (int x = 0; x < t.out_w; x += t.tile) widest = tile_pixels(t, x) > widest ? tile_pixels(t, x) : widest;
    return static_cast<std::size_t>(round_up(widest * t.channels * 16, 32));
  }

  // Pairs of rows the ring holds: a window, the pairs one pass adds (4), and one to spare.
  static int ring_pairs(const ResampleTask& t) { return t.ay.window_pairs + kLanes / 2 + 1; }

  // One past the last input row output row y reads.
  int need(int y) const { return imin(t_.ay.pair_start[y] + 2 * t_.ay.pair_count[y], t_.in_h); }

  // The ring's pair of rows (2m, 2m + 1): per plane, pad_w columns x 2 rows.
  std::int16_t* pair_slot(int m) { return ring_ + static_cast<std::size_t>(m % ring_pairs_) * 3 * 2 * pad_w_; }

  // The input bytes of the column tile at output column xt, rows row0 .. row0 + 7, asked for
  // ahead of their use a few rows at a time.
  class InputRows {
   public:
    InputRows(const ResampleTask& t, int row0, int xt) : t_(t), row_(row0), end_(imin(row0 + kLanes, t.in_h)) {
      const int xe = imin(xt + t.tile, t.out_w), first = t.ax.start[xt];
      bytes_ = (imin(t.ax.start[xe - 1] + t.ax.taps, t.in_w) - first) * t.channels;
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
    const int pairs = t_.ax.taps / 2, cn = t_.channels, bits = t_.ax.bits;
    const std::ptrdiff_t step = static_cast<std::ptrdiff_t>(cn) * 16;  // int16 values per input pixel
    const I round = L::splat(std::int32_t{1} << (bits - 1));
    std::int16_t* dst[kLanes / 2];  // row0 is even: pairs row0 / 2 + j
    const int npairs = (n + 1) / 2;   // an odd last row goes with the repeated row after it (weight 0)
    for (int j = 0; j < npairs; ++j) dst[j] = pair_slot(row0 / 2 + j);
    for (int xt = 0; xt < t_.out_w; xt += t_.tile) {
      const int xe = imin(xt + t_.tile, t_.out_w), first = t_.ax.start[xt];
      const std::uint8_t* rows[kLanes];
      for (int r = 0; r < kLanes; ++r)  // short blocks repeat their last row: computed, not stored
        rows[r] = t_.src + static_cast<std::ptrdiff_t>(row0 + imin(r, n - 1)) * t_.src_stride + first * cn;
      L::pair_columns(rows, 0, tile_pixels(t_, xt) * cn, (t_.in_w - first) * cn, cn, block_);
      // the next tile's input (or the next pass's first), asked for two rows per 8 outputs
      // while this tile computes: the memory then delivers it in time, at an even pace
      InputRows ahead(t_, xe < t_.out_w ? row0 : row0 + n, xe < t_.out_w ? xe : 0);
      const std::int16_t* pixels = block_ - first * step;  // pixels + x * step: input column x
      for (int xb = xt; xb < xe; xb += kLanes) {
        ahead.prefetch(xb + kLanes >= xe ? kLanes : 2);
        I sums[3][kLanes];  // [plane][output xb + i]
        for (int j = 0; j < kLanes; j += 4) {
          // outputs xb + j .. xb + j + 3: twelve independent sums, enough to keep two
          // multiply-adds in flight per cycle
          const int g = (xb + j) / 4;
          const int* at = t_.ax.group_at + 5 * g;
          const std::int32_t* w = t_.ax.grouped + static_cast<std::size_t>(g) * pairs * 4;  // [pair][i]
          const std::int16_t* p = pixels + at[0] * step;
          const std::ptrdiff_t d1 = at[2] * step, d2 = at[3] * step, d3 = at[4] * step;
          const std::int16_t *q0 = p + t_.map[0] * 16, *q1 = p + t_.map[1] * 16, *q2 = p + t_.map[2] * 16;
          I a0 = round, a1 = round, a2 = round, b0 = round, b1 = round, b2 = round;
          I c0 = round, c1 = round, c2 = round, e0 = round, e1 = round, e2 = round;
          for (int k = 0; k < pairs; ++k, q0 += 2 * step, q1 += 2 * step, q2 += 2 * step, w += 4) {
            I wk = L::splat(w[0]);
            a0 = L::madd(a0, q0, wk);
            a1 = L::madd(a1, q1, wk);
            a2 = L::madd(a2, q2, wk);
            wk = L::splat(w[1]);
            b0 = L::madd(b0, q0 + d1, wk);
            b1 = L::madd(b1, q1 + d1, wk);
            b2 = L::madd(b2, q2 + d1, wk);
            wk = L::splat(w[2]);
            c0 = L::madd(c0, q0 + d2, wk);
            c1 = L::madd(c1, q1 + d2, wk);
            c2 = L::madd(c2, q2 + d2, wk);
            wk = L::splat(w[3]);
            e0 = L::madd(e0, q0 + d3, wk);
            e1 = L::madd(e1, q1 + d3, wk);
            e2 = L::madd(e2, q2 + d3, wk);
          }
          sums[0][j] = a0, sums[0][j + 1] = b0, sums[0][j + 2] = c0, sums[0][j + 3] = e0;
          sums[1][j] = a1, sums[1][j + 1] = b1, sums[1][j + 2] = c1, sums[1][j + 3] = e1;
          sums[2][j] = a2, sums[2][j + 1] = b2, sums[2][j + 2] = c2, sums[2][j + 3] = e2;
        }
        // lanes are rows: 8 outputs x 8 rows per plane, rounded and transposed into the ring
        for (int c = 0; c < 3; ++c) L::store_pairs(sums[c], bits, dst, npairs, 2 * (c * pad_w_ + xb));
      }
    }
  }

  // Output row y from the ring: vertical taps, round and clip, then normalize into CHW.
  template <bool Half>
  void vertical(int y) {
    const int pairs = t_.ay.pair_count[y], m0 = t_.ay.pair_start[y] / 2, bits = t_.ay.bits;
    const std::int32_t* w = t_.ay.aligned + static_cast<std::size_t>(y) * t_.ay.window_pairs;
    const I round = L::splat(std::int32_t{1} << (bits - 1));
    // pairs grow with the shrink factor (12 or 13 for 4320 -> 768 rows); past 32 (a 16x
    // shrink) the ring slot of each pair is looked up per use instead of once per output row
    const std::int16_t* rows[32];
    const bool cached = pairs <= 32;
    if (cached)
      for (int k = 0; k < pairs; ++k) rows[k] = pair_slot(m0 + k);
    const std::size_t plane = static_cast<std::size_t>(t_.out_h) * t_.out_w;
    for (int c = 0; c < 3; ++c) {
      const F scale = L::fset1(t_.scale[c]), bias = L::fset1(t_.bias[c]);
      const std::size_t at = c * plane + static_cast<std::size_t>(y) * t_.out_w;
      const std::ptrdiff_t col = 2 * static_cast<std::ptrdiff_t>(c) * pad_w_;
      Writer<Half> out(t_, at);
      int x = 0;
      for (; x + 4 * kLanes <= t_.out_w; x += 4 * kLanes) {
        // four sums of 8 columns: from pair to pair they depend on each other only by an add
        I a0 = round, a1 = round, a2 = round, a3 = round;
        for (int k = 0; k < pairs; ++k) {
          const std::int16_t* p = (cached ? rows[k] : pair_slot(m0 + k)) + col + 2 * x;
          const I wk = L::splat(w[k]);
          a0 = L::madd(a0, p, wk);
          a1 = L::madd(a1, p + 16, wk);
          a2 = L::madd(a2, p + 32, wk);
          a3 = L::madd(a3, p + 48, wk);
        }
        out.put(L::normalize(a0, bits, scale, bias));
        out.put(L::normalize(a1, bits, scale, bias));
        out.put(L::normalize(a2, bits, scale, bias));
        out.put(L::normalize(a3, bits, scale, bias));
      }
      for (; x < t_.out_w; x += kLanes) {  // the rest, 8 columns at a time (the ring is padded)
        I a = round;
        for (int k = 0; k < pairs; ++k) a = L::madd(a, (cached ? rows[k] : pair_slot(m0 + k)) + col + 2 * x, L::splat(w[k]));
        out.put(L::normalize(a, bits, scale, bias), imin(kLanes, t_.out_w - x));
      }
      out.finish();
    }
  }

  // Stores one output row, 8 values at a time, left to right. A float32 output that streams
  // (t.stream) is written with non-temporal stores of whole 32-byte lines; a row that starts 16
  // bytes past a 32-byte boundary first stores 4 values, then each line takes the high half of
  // one vector and the low half of the next.
  template <bool Half>
  class Writer {
   public:
    Writer(const ResampleTask& t, std::size_t at) {
      if (Half) {
        half_ = static_cast<std::uint16_t*>(t.out) + at;
        return;
      }
      p_ = static_cast<float*>(t.out) + at;
      const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p_);
      mode_ = !t.stream || (a & 15) ? kPlain : ((a & 31) ? kShifted : kAligned);
    }
    void put(const F& v, int n = kLanes) {
      if (Half) {
        L::store_half(half_, v, n);
        half_ += kLanes;
        return;
      }
      if (n < kLanes) {  // the row's last few: a plain store after the streamed part
        finish();
        L::store_n(p_, v, n);
      } else if (mode_ == kAligned) {
        L::stream(p_, v);
      } else if (mode_ == kShifted) {
        if (started_)
          L::stream_join(p_ - 4, last_, v);
        else
          L::stream_low(p_, v);
        last_ = v;
        started_ = true;
      } else {
        L::store(p_, v);
      }
      p_ += kLanes;
    }
    void finish() {
      if (!Half && mode_ == kShifted && started_) L::stream_high(p_ - 4, last_);
      started_ = false;
      mode_ = kPlain;
    }

   private:
    enum Mode { kPlain, kAligned, kShifted };
    float* p_ = nullptr;
    std::uint16_t* half_ = nullptr;
    Mode mode_ = kPlain;
    bool started_ = false;
    F last_{};
  };

  const ResampleTask& t_;
  const int pad_w_, ring_pairs_;
  std::int16_t* block_;  // pair columns of one column tile: [byte column][row][2]
  std::int16_t* ring_;   // resampled rows: [row / 2 % ring_pairs][plane][x][row % 2]
};

// Scalar lanes: the portable build, and the reference the AVX2 lanes must equal.
struct PortableLanes {
  struct I {
    std::int32_t v[kLanes];
  };
  struct F {
    float v[kLanes];
  };
  static I splat(std::int32_t a) {
    I r;
    for (std::int32_t& x : r.v) x = a;
    return r;
  }
  // acc + per lane r: p[2r] * low weight + p[2r + 1] * high weight of the pair word w
  static I madd(const I& acc, const std::int16_t* p, const I& w) {
    const int lo = low_weight(w.v[0]), hi = high_weight(w.v[0]);
    I r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = acc.v[i] + p[2 * i] * lo + p[2 * i + 1] * hi;
    return r;
  }
  // clip8 of 8 sums, normalized: value * scale + bias
  static F normalize(const I& a, int bits, const F& scale, const F& bias) {
    F r;
    for (int i = 0; i < kLanes; ++i) r.v[i] = static_cast<float>(clip8(a.v[i], bits)) * scale.v[i] + bias.v[i];
    return r;
  }
  // s[o]: the sums of output o for rows 0..7 -> clip8 into the ring's pairs of rows:
  // dst[j][offset + 2 * o + b] = row 2j + b, pairs j < npairs
  static void store_pairs(const I* s, int bits, std::int16_t* const* dst, int npairs, std::ptrdiff_t offset) {
    for (int j = 0; j < npairs; ++j)
      for (int o = 0; o < kLanes; ++o)
        for (int b = 0; b < 2; ++b) dst[j][offset + 2 * o + b] = static_cast<std::int16_t>(clip8(s[o].v[2 * j + b], bits));
  }
  // Pair columns [begin, count) of 8 rows: out[i * 16 + 2r] = rows[r][i], out[i * 16 + 2r + 1]
  // = rows[r][i + cn], or 0 at or past avail bytes (a phantom tap: its weight is 0).
  static void pair_columns(const std::uint8_t* const* rows, int begin, int count, int avail, int cn,
                           std::int16_t* out) {
    for (int i = begin; i < count; ++i)
      for (int r = 0; r < kLanes; ++r) {
        out[static_cast<std::size_t>(i) * 16 + 2 * r] = rows[r][i];
        out[static_cast<std::size_t>(i) * 16 + 2 * r + 1] = i + cn < avail ? rows[r][i + cn] : 0;
      }
  }
  static F fset1(float a) {
    F r;
    for (float& x : r.v) x = a;
    return r;
  }
  static void store(float* p, const F& a) { std::memcpy(p, a.v, sizeof a.v); }
  static void stream(float* p, const F& a) { store(p, a); }
  static void stream_low(float* p, const F& a) { std::memcpy(p, a.v, sizeof(float) * 4); }
  static void stream_high(float* p, const F& a) { std::memcpy(p, a.v + 4, sizeof(float) * 4); }
  // p[0..3] = a's high half, p[4..7] = b's low half
  static void stream_join(float* p, const F& a, const F& b) {
    stream_high(p, a);
    stream_low(p + 4, b);
  }
  static void fence() {}
  static void store_n(float* p, const F& a, int n) { std::memcpy(p, a.v, sizeof(float) * n); }
  static void store_half(std::uint16_t* p, const F& a, int n) {
    for (int i = 0; i < n; ++i) p[i] = half_bits(a.v[i]);
  }
};

}  // namespace
}  // namespace gi

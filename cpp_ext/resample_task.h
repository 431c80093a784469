// One resize-and-normalize job as plain data. The kernels (resample_kernel.h) are compiled
// twice, once per instruction set; this header has no standard-library types on purpose, so
// no template of the library is instantiated with AVX2 code and then shared by the linker
// with the portable build (which would crash on a CPU without AVX2).
#pragma once
#include <cstddef>
#include <cstdint>

namespace gi {

// Per-axis resampling table in 16-bit fixed point: output i is
//   clip((2^(bits-1) + sum_k weights[i * taps + k] * input[start[i] + k]) >> bits, 0, 255).
// Built by make_axis (resize.cpp). The kernels multiply-add two taps at a time, so the weights
// come as pair words (tap 2j in the low 16 bits, 2j + 1 in the high 16 bits) in two layouts:
// - for the horizontal pass, taps is even (zero weights pad short windows; where the input is
//   narrower than taps the last tap is a "phantom" one past the input: weight 0, read as 0),
//   and the pairs are grouped by four outputs: grouped[(g * taps / 2 + j) * 4 + i] for output
//   4g + i; group_at[5g] is the first input of output 4g and group_at[5g + 1 + i] how far
//   output 4g + i starts after it. Groups run on to a multiple of 8 outputs, repeating the last
//   output (computed, never stored);
// - for the vertical pass, each output's window of non-zero weights starts at an even input,
//   pair_start[i], so that its taps are whole pairs of rows (2m, 2m + 1) - the ring keeps rows
//   two by two: aligned[i * window_pairs + j] for j < pair_count[i] (<= window_pairs). A pair
//   past the input's last row has weight 0 there.
struct AxisView {
  int taps;
  int bits;
  const int* start;
  const std::int32_t* grouped;
  const int* group_at;
  int window_pairs;
  const int* pair_start;
  const int* pair_count;
  const std::int32_t* aligned;
};

struct ResampleTask {
  const std::uint8_t* src;    // top-left pixel of the (cropped) input
  std::ptrdiff_t src_stride;  // bytes from one input row to the next
  int channels;               // bytes per pixel: 3 or 4
  int in_w, in_h;             // input (crop) size in pixels
  int map[3];                 // output plane c reads input channel map[c]
  int out_w, out_h;
  float scale[3], bias[3];    // value -> value * scale + bias, per output plane
  void* out;                  // (3, out_h, out_w) float32 or float16 (uint16 bits)
  bool half;
  bool stream;                // float32 output written around the caches (a large output)
  AxisView ax, ay;
  int tile;                   // output columns per column tile of the horizontal pass (8k)
};

// Scratch for one thread in bytes (a multiple of 64), sized by scratch_bytes(); owned by the
// caller, 64-byte aligned.
std::size_t scratch_bytes(const ResampleTask& t);

// Writes output rows [y0, y1) of t.out. Portable and AVX2 builds of the same algorithm.
void resample_rows_portable(const ResampleTask& t, int y0, int y1, void* scratch);
void resample_rows_avx2(const ResampleTask& t, int y0, int y1, void* scratch);
bool avx2_compiled();

}  // namespace gi

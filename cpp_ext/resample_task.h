// One resize-and-normalize job as plain data. The kernels (resample_kernel.h) are compiled
// twice, once per instruction set; this header has no standard-library types on purpose, so
// no template of the library is instantiated with AVX2 code and then shared by the linker
// with the portable build (which would crash on a CPU without AVX2).
#pragma once
#include <cstddef>
#include <cstdint>

namespace gi {

// Per-axis resampling table: output i reads `taps` inputs from start[i], weighted by
// weights[i * taps + k]. Built by make_axis (resize.cpp); zero weights pad short windows.
// The horizontal pass reads the x axis's weights regrouped by four outputs:
// grouped[(g * taps + k) * 4 + i] is the weight of tap k of output 4g + i; group_at[5g] is
// the first input of output 4g and group_at[5g + 1 + i] how far output 4g + i starts after
// it. Groups run on to a multiple of 8 outputs, repeating the last output (computed, never
// stored).
struct AxisView {
  int taps;
  const int* start;
  const float* weights;
  const float* grouped;
  const int* group_at;
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

// Scratch for one thread, sized by scratch_floats(); owned by the caller.
std::size_t scratch_floats(const ResampleTask& t);

// Writes output rows [y0, y1) of t.out. Portable and AVX2 builds of the same algorithm.
void resample_rows_portable(const ResampleTask& t, int y0, int y1, float* scratch);
void resample_rows_avx2(const ResampleTask& t, int y0, int y1, float* scratch);
bool avx2_compiled();

}  // namespace gi

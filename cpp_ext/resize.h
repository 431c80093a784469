// Frame -> model input: crop, resize (PIL's antialiased bicubic), normalize, HWC -> CHW.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "resample_task.h"

namespace gi {

// Resampling table of one axis in 16-bit fixed point (see AxisView): the weights of
// Pillow's precompute_coeffs for Image.resize(..., BICUBIC) (a = -0.5, support 2 scaled by the
// shrink factor, normalized to sum 1 in double), quantized as Pillow-SIMD's
// normalize_coeffs_8bpc does - `bits` fraction bits, the most (up to 22) that keep the largest
// weight below 2^15, each weight rounded half away from zero - and padded to a common, even
// tap count; plus the same weights as pair words in the layouts of the two passes.
struct Axis {
  int taps = 0;
  int bits = 0;
  std::vector<int> start;
  std::vector<std::int16_t> weights;  // [output][tap]
  std::vector<std::int32_t> grouped;
  std::vector<int> group_at;
  int window_pairs = 0;
  std::vector<int> pair_start, pair_count;
  std::vector<std::int32_t> aligned;  // [output][window_pairs]
  AxisView view() const {
    return {taps,          bits,          start.data(),      grouped.data(), group_at.data(),
            window_pairs, pair_start.data(), pair_count.data(), aligned.data()};
  }
};

Axis make_axis(int in_size, int out_size);

// make_axis, remembered: the frames of a video all ask for the same few tables.
std::shared_ptr<const Axis> cached_axis(int in_size, int out_size);

// Runs t (t.ax / t.ay must outlive the call; t.tile and t.stream are set here) on up to
// `threads` threads, each taking a band of output rows. The instruction set is chosen at run
// time.
void resample(ResampleTask& t, int threads);

// "avx2" or "portable": which build resample() runs on this CPU.
const char* resample_isa();

// "portable" makes resample() run the portable build even where AVX2 is there (to test and
// time it); "auto" undoes that. False for any other name.
bool set_resample_isa(const char* name);

}  // namespace gi

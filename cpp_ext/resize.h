// Frame -> model input: crop, resize (PIL's antialiased bicubic), normalize, HWC -> CHW.
#pragma once
#include <memory>
#include <vector>

#include "resample_task.h"

namespace gi {

// Resampling table of one axis, exactly as Pillow's precompute_coeffs builds it for
// Image.resize(..., BICUBIC) (a = -0.5, support 2 scaled by the shrink factor, weights
// normalized to sum 1 in double), then stored as float32 and padded to a common tap count;
// plus the same weights regrouped by four outputs for the horizontal pass (see AxisView).
struct Axis {
  int taps = 0;
  std::vector<int> start;
  std::vector<float> weights;
  std::vector<float> grouped;
  std::vector<int> group_at;
  AxisView view() const { return {taps, start.data(), weights.data(), grouped.data(), group_at.data()}; }
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

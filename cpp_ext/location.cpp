#include "location.h"

#include <cmath>

namespace gi {

namespace {
inline std::int32_t to_bin(float value, float per_bin) {
  // floor(x * 1000 / size), clamped: the convention of transformers' Florence2PostProcessor.
  float b = std::floor(value / per_bin);
  if (!(b >= 0.0f)) return 0;  // also catches NaN
  if (b > kNumBins - 1) return kNumBins - 1;
  return static_cast<std::int32_t>(b);
}
}  // namespace

void quantize_xy(const float* coords, std::size_t n, float width, float height, std::int32_t* bins) {
  const float per_w = width / kNumBins, per_h = height / kNumBins;
  for (std::size_t i = 0; i < n; ++i) bins[i] = to_bin(coords[i], (i % 2 == 0) ? per_w : per_h);
}

void dequantize_xy(const std::int32_t* bins, std::size_t n, float width, float height, float* centres) {
  const float per_w = width / kNumBins, per_h = height / kNumBins;
  for (std::size_t i = 0; i < n; ++i)
    centres[i] = (static_cast<float>(bins[i]) + 0.5f) * ((i % 2 == 0) ? per_w : per_h);
}

}  // namespace gi

// Florence-2 location codec: 1000 bins per axis, floor to encode, bin centre to decode.
// Pure functions over raw buffers; the pybind11 layer (bindings.cpp) checks arrays and
// releases the GIL around them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gi {

constexpr int kNumBins = 1000;

// coords: n values laid out x, y, x, y, ... (pixels). bins receives the bin of each.
void quantize_xy(const float* coords, std::size_t n, float width, float height, std::int32_t* bins);

// bins: n values laid out x, y, x, y, ... centres receives (bin + 0.5) * size / 1000.
void dequantize_xy(const std::int32_t* bins, std::size_t n, float width, float height, float* centres);

}  // namespace gi

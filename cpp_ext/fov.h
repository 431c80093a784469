// Field of view: the rectangle around the round or octagonal scope image inside the black
// border of an endoscopy frame.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gi {

struct FovRect {
  int x, y, w, h;
};

// frame: h rows of w pixels, `channels` bytes each (colour in the first three), rows
// `stride` bytes apart. A pixel is lit when its brightest colour channel exceeds
// `threshold`. Rows and columns are sampled every `step` pixels; a sampled row belongs to the
// field of view when at least ceil(min_fill * most lit samples of any row) of its samples are
// lit (columns likewise), the field of view is the longest run of such rows (columns), and
// its four edges are then refined to single pixels with the same test. No lit pixel: the
// whole frame.
FovRect find_fov(const std::uint8_t* frame, std::ptrdiff_t stride, int h, int w, int channels, int step,
                 int threshold, double min_fill);

// Sampling step find_fov uses by default: about 256 samples along the shorter side.
inline int fov_step(int h, int w) {
  const int shorter = h < w ? h : w;
  return shorter / 256 > 1 ? shorter / 256 : 1;
}

}  // namespace gi

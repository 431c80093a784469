#include "fov.h"

#include <cmath>
#include <vector>

namespace gi {

namespace {

struct Frame {
  const std::uint8_t* data;
  std::ptrdiff_t stride;
  int h, w, channels, step, threshold;

  bool lit(int y, int x) const {
    const std::uint8_t* p = data + static_cast<std::ptrdiff_t>(y) * stride + static_cast<std::ptrdiff_t>(x) * channels;
    const int m = p[0] > p[1] ? (p[0] > p[2] ? p[0] : p[2]) : (p[1] > p[2] ? p[1] : p[2]);
    return m > threshold;
  }
  // lit samples of row y at the sampled columns, and of column x at the sampled rows
  int row_count(int y) const {
    int n = 0;
    for (int x = 0; x < w; x += step) n += lit(y, x);
    return n;
  }
  int col_count(int x) const {
    int n = 0;
    for (int y = 0; y < h; y += step) n += lit(y, x);
    return n;
  }
};

struct Run {
  int first = 0, last = -1;
};

// The first longest run of entries >= need.
Run longest_run(const std::vector<int>& counts, int need) {
  Run best, cur;
  bool open = false;
  for (int i = 0; i <= static_cast<int>(counts.size()); ++i) {
    const bool ok = i < static_cast<int>(counts.size()) && counts[i] >= need;
    if (ok && !open) {
      cur.first = i;
      open = true;
    }
    if (!ok && open) {
      cur.last = i - 1;
      if (cur.last - cur.first > best.last - best.first) best = cur;
      open = false;
    }
  }
  return best;
}

int need_for(int most, double min_fill) {
  const int need = static_cast<int>(std::ceil(most * min_fill));
  return need > 1 ? need : 1;
}

}  // namespace

FovRect find_fov(const std::uint8_t* data, std::ptrdiff_t stride, int h, int w, int channels, int step,
                 int threshold, double min_fill) {
  const Frame f{data, stride, h, w, channels, step, threshold};
  const int gh = (h + step - 1) / step, gw = (w + step - 1) / step;
  std::vector<int> rows(gh, 0), cols(gw, 0);
  for (int i = 0; i < gh; ++i)
    for (int j = 0; j < gw; ++j)
      if (f.lit(i * step, j * step)) {
        ++rows[i];
        ++cols[j];
      }
  int most_row = 0, most_col = 0;
  for (int v : rows) most_row = v > most_row ? v : most_row;
  for (int v : cols) most_col = v > most_col ? v : most_col;
  if (most_row == 0) return {0, 0, w, h};
  const int need_row = need_for(most_row, min_fill), need_col = need_for(most_col, min_fill);
  const Run r = longest_run(rows, need_row), c = longest_run(cols, need_col);

  // Each edge lies between its sampled row (column) and the next sample outside: walk the
  // pixels in between while they pass the same test.
  int top = r.first * step, bottom = r.last * step, left = c.first * step, right = c.last * step;
  for (int y = top - 1; y > (r.first - 1) * step && y >= 0 && f.row_count(y) >= need_row; --y) top = y;
  for (int y = bottom + 1; y < (r.last + 1) * step && y < h && f.row_count(y) >= need_row; ++y) bottom = y;
  for (int x = left - 1; x > (c.first - 1) * step && x >= 0 && f.col_count(x) >= need_col; --x) left = x;
  for (int x = right + 1; x < (c.last + 1) * step && x < w && f.col_count(x) >= need_col; ++x) right = x;
  return {left, top, right - left + 1, bottom - top + 1};
}

}  // namespace gi

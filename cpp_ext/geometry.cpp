#include "geometry.h"

#include <algorithm>
#include <climits>
#include <cstring>

namespace gi {

namespace {

// OpenCV's fixed point for polygon edges: x in 1/65536 pixel.
constexpr int kShift = 16;
constexpr std::int64_t kOne = std::int64_t(1) << kShift;

struct Edge {
  int y0 = 0, y1 = 0;
  std::int64_t x = 0, dx = 0;
  Edge* next = nullptr;
};

// cv::clipLine(Size2l, Point2l&, Point2l&): clip a segment to [0, w-1] x [0, h-1]; false when
// it misses the image.
bool clip_line(std::int64_t w, std::int64_t h, std::int64_t& x1, std::int64_t& y1, std::int64_t& x2,
               std::int64_t& y2) {
  const std::int64_t right = w - 1, bottom = h - 1;
  if (w <= 0 || h <= 0) return false;
  int c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8;
  int c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8;
  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    std::int64_t a;
    if (c1 & 12) {
      a = c1 < 8 ? 0 : bottom;
      x1 += static_cast<std::int64_t>(static_cast<double>(a - y1) * (x2 - x1) / (y2 - y1));
      y1 = a;
      c1 = (x1 < 0) + (x1 > right) * 2;
    }
    if (c2 & 12) {
      a = c2 < 8 ? 0 : bottom;
      x2 += static_cast<std::int64_t>(static_cast<double>(a - y2) * (x2 - x1) / (y2 - y1));
      y2 = a;
      c2 = (x2 < 0) + (x2 > right) * 2;
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        a = c1 == 1 ? 0 : right;
        y1 += static_cast<std::int64_t>(static_cast<double>(a - x1) * (y2 - y1) / (x2 - x1));
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        a = c2 == 1 ? 0 : right;
        y2 += static_cast<std::int64_t>(static_cast<double>(a - x2) * (y2 - y1) / (x2 - x1));
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) == 0;
}

class Canvas {
 public:
  Canvas(std::uint8_t* mask, int h, int w) : m_(mask), h_(h), w_(w) {}

  // cv::Line with an 8-connected LineIterator walking left to right.
  void line(std::int64_t x1l, std::int64_t y1l, std::int64_t x2l, std::int64_t y2l) {
    int x1 = static_cast<int>(x1l), y1 = static_cast<int>(y1l), x2 = static_cast<int>(x2l), y2 = static_cast<int>(y2l);
    if (static_cast<unsigned>(x1) >= static_cast<unsigned>(w_) || static_cast<unsigned>(x2) >= static_cast<unsigned>(w_) ||
        static_cast<unsigned>(y1) >= static_cast<unsigned>(h_) || static_cast<unsigned>(y2) >= static_cast<unsigned>(h_)) {
      std::int64_t a = x1, b = y1, c = x2, d = y2;
      if (!clip_line(w_, h_, a, b, c, d)) return;
      x1 = static_cast<int>(a), y1 = static_cast<int>(b), x2 = static_cast<int>(c), y2 = static_cast<int>(d);
    }
    int dx = x2 - x1, dy = y2 - y1, delta_x = 1, delta_y = 1;
    if (dx < 0) {
      dx = -dx;
      dy = -dy;
      x1 = x2;
      y1 = y2;
    }
    if (dy < 0) {
      dy = -dy;
      delta_y = -1;
    }
    const bool vert = dy > dx;
    if (vert) {
      std::swap(dx, dy);
      std::swap(delta_x, delta_y);
    }
    int err = dx - (dy + dy);
    const int plus_delta = dx + dx, minus_delta = -(dy + dy);
    int minus_shift = delta_x, plus_shift = 0, minus_step = 0, plus_step = delta_y;
    if (vert) {
      std::swap(plus_step, plus_shift);
      std::swap(minus_step, minus_shift);
    }
    int x = x1, y = y1;
    for (int i = 0; i <= dx; ++i) {
      m_[static_cast<std::size_t>(y) * w_ + x] = 1;
      const int mask = err < 0 ? -1 : 0;
      err += minus_delta + (plus_delta & mask);
      x += minus_shift + (plus_shift & mask);
      y += minus_step + (plus_step & mask);
    }
  }

  // cv::CollectPolyEdges (shift 0, LINE_8): draws every edge and collects the non-horizontal ones.
  void collect(const IntPolygon& poly, std::vector<Edge>& edges) {
    const std::int32_t* v = poly.xy;
    std::int64_t x0 = static_cast<std::int64_t>(v[2 * (poly.count - 1)]) << kShift, y0 = v[2 * (poly.count - 1) + 1];
    for (int i = 0; i < poly.count; ++i) {
      const std::int64_t x1 = static_cast<std::int64_t>(v[2 * i]) << kShift, y1 = v[2 * i + 1];
      std::int64_t t0x = (x0 + (kOne >> 1)) >> kShift, t1x = (x1 + (kOne >> 1)) >> kShift, t0y = y0, t1y = y1;
      line(t0x, t0y, t1x, t1y);
      std::int64_t c0y = y0, c1y = y1;
      if (static_cast<unsigned>(t0x) >= static_cast<unsigned>(w_) || static_cast<unsigned>(t1x) >= static_cast<unsigned>(w_) ||
          static_cast<unsigned>(t0y) >= static_cast<unsigned>(h_) || static_cast<unsigned>(t1y) >= static_cast<unsigned>(h_)) {
        clip_line(w_, h_, t0x, t0y, t1x, t1y);
        if (t0y != t1y) {
          c0y = t0y;
          c1y = t1y;
        }
      }
      const std::int64_t c0x = t0x << kShift, c1x = t1x << kShift;
      if (y0 != y1) {
        Edge e;
        e.dx = (c1x - c0x) / (c1y - c0y);
        if (y0 < y1) {
          e.y0 = static_cast<int>(y0);
          e.y1 = static_cast<int>(y1);
          e.x = c0x + (y0 - c0y) * e.dx;
        } else {
          e.y0 = static_cast<int>(y1);
          e.y1 = static_cast<int>(y0);
          e.x = c1x + (y1 - c1y) * e.dx;
        }
        edges.push_back(e);
      }
      x0 = x1;
      y0 = y1;
    }
  }

  // cv::FillEdgeCollection: scanline over an active edge list kept sorted by x.
  void fill(std::vector<Edge>& edges) {
    const int total = static_cast<int>(edges.size());
    if (total < 2) return;
    int y_max = INT_MIN, y_min = INT_MAX;
    std::int64_t x_max = -1, x_min = INT64_MAX;  // OpenCV starts x_max at 0xFFFF...: -1
    for (const Edge& e : edges) {
      const std::int64_t x1 = e.x + (e.y1 - e.y0) * e.dx;
      y_min = std::min(y_min, e.y0);
      y_max = std::max(y_max, e.y1);
      x_min = std::min({x_min, e.x, x1});
      x_max = std::max({x_max, e.x, x1});
    }
    if (y_max < 0 || y_min >= h_ || x_max < 0 || x_min >= (static_cast<std::int64_t>(w_) << kShift)) return;
    std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
      return a.y0 != b.y0 ? a.y0 < b.y0 : a.x != b.x ? a.x < b.x : a.dx < b.dx;
    });
    Edge tmp;
    tmp.y0 = INT_MAX;
    edges.push_back(tmp);
    int i = 0;
    Edge* e = &edges[0];
    y_max = std::min(y_max, h_);
    for (int y = e->y0; y < y_max; ++y) {
      Edge *last, *prelast, *keep_prelast;
      bool draw = false;
      const bool clipline = y < 0;
      prelast = &tmp;
      last = tmp.next;
      while (last || e->y0 == y) {
        if (last && last->y1 == y) {  // the edge ends here
          prelast->next = last->next;
          last = last->next;
          continue;
        }
        keep_prelast = prelast;
        if (last && (e->y0 > y || last->x < e->x)) {
          prelast = last;
          last = last->next;
        } else if (i < total) {  // the edge starts here
          prelast->next = e;
          e->next = last;
          prelast = e;
          e = &edges[++i];
        } else {
          break;
        }
        if (draw) {
          if (!clipline) {
            int x1, x2;
            if (keep_prelast->x > prelast->x) {
              x1 = static_cast<int>((prelast->x + kOne - 1) >> kShift);
              x2 = static_cast<int>(keep_prelast->x >> kShift);
            } else {
              x1 = static_cast<int>((keep_prelast->x + kOne - 1) >> kShift);
              x2 = static_cast<int>(prelast->x >> kShift);
            }
            if (x1 < w_ && x2 >= 0) {
              x1 = std::max(x1, 0);
              x2 = std::min(x2, w_ - 1);
              if (x2 >= x1) std::memset(m_ + static_cast<std::size_t>(y) * w_ + x1, 1, x2 - x1 + 1);
            }
          }
          keep_prelast->x += keep_prelast->dx;
          prelast->x += prelast->dx;
        }
        draw = !draw;
      }
      // bubble sort of the active list by x
      keep_prelast = nullptr;
      do {
        prelast = &tmp;
        last = tmp.next;
        Edge* last_exchange = nullptr;
        while (last != keep_prelast && last->next != nullptr) {
          Edge* te = last->next;
          if (last->x > te->x) {
            prelast->next = te;
            last->next = te->next;
            te->next = last;
            prelast = te;
            last_exchange = prelast;
          } else {
            prelast = last;
            last = te;
          }
        }
        if (last_exchange == nullptr) break;
        keep_prelast = last_exchange;
      } while (keep_prelast != tmp.next && keep_prelast != &tmp);
    }
  }

 private:
  std::uint8_t* m_;
  int h_, w_;
};

inline int popcount64(std::uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int n = 0;
  for (; v; v &= v - 1) ++n;
  return n;
#endif
}

// 0/1 bytes -> bits, 64 pixels a word (the tail word zero-padded).
std::vector<std::uint64_t> pack(const std::uint8_t* m, int count, std::size_t pixels, std::size_t words) {
  std::vector<std::uint64_t> out(words * count, 0);
  for (int i = 0; i < count; ++i) {
    const std::uint8_t* src = m + pixels * i;
    std::uint64_t* dst = out.data() + words * i;
    for (std::size_t p = 0; p < pixels; ++p)
      if (src[p]) dst[p >> 6] |= std::uint64_t(1) << (p & 63);
  }
  return out;
}

}  // namespace

void fill_polygons(std::uint8_t* mask, int h, int w, const std::vector<IntPolygon>& polygons) {
  Canvas canvas(mask, h, w);
  std::vector<Edge> edges;
  for (const IntPolygon& p : polygons)
    if (p.count > 0) canvas.collect(p, edges);
  canvas.fill(edges);
}

void box_iou(const float* a, int n, const float* b, int m, float* out) {
  for (int i = 0; i < n; ++i) {
    const float* p = a + 4 * i;
    const double area_a = std::max(0.0, double(p[2]) - p[0]) * std::max(0.0, double(p[3]) - p[1]);
    for (int j = 0; j < m; ++j) {
      const float* q = b + 4 * j;
      const double area_b = std::max(0.0, double(q[2]) - q[0]) * std::max(0.0, double(q[3]) - q[1]);
      const double iw = std::max(0.0, std::min(double(p[2]), double(q[2])) - std::max(double(p[0]), double(q[0])));
      const double ih = std::max(0.0, std::min(double(p[3]), double(q[3])) - std::max(double(p[1]), double(q[1])));
      const double inter = iw * ih, uni = area_a + area_b - inter;
      out[static_cast<std::size_t>(i) * m + j] = static_cast<float>(uni > 0 ? inter / uni : 0.0);
    }
  }
}

void mask_iou(const std::uint8_t* a, int n, const std::uint8_t* b, int m, std::size_t pixels, float* out) {
  const std::size_t words = (pixels + 63) / 64;
  const std::vector<std::uint64_t> pa = pack(a, n, pixels, words), pb = pack(b, m, pixels, words);
  std::vector<std::int64_t> count_b(m, 0);
  for (int j = 0; j < m; ++j)
    for (std::size_t k = 0; k < words; ++k) count_b[j] += popcount64(pb[words * j + k]);
  for (int i = 0; i < n; ++i) {
    std::int64_t count_a = 0;
    for (std::size_t k = 0; k < words; ++k) count_a += popcount64(pa[words * i + k]);
    for (int j = 0; j < m; ++j) {
      std::int64_t inter = 0;
      for (std::size_t k = 0; k < words; ++k) inter += popcount64(pa[words * i + k] & pb[words * j + k]);
      const std::int64_t uni = count_a + count_b[j] - inter;
      out[static_cast<std::size_t>(i) * m + j] = uni > 0 ? static_cast<float>(static_cast<double>(inter) / uni) : 0.0f;
    }
  }
}

double polygon_area(const float* xy, int count) {
  if (count < 3) return 0.0;
  double twice = 0.0;
  for (int i = 0; i < count; ++i) {
    const int j = i + 1 < count ? i + 1 : 0;
    twice += double(xy[2 * i]) * xy[2 * j + 1] - double(xy[2 * j]) * xy[2 * i + 1];
  }
  return (twice < 0 ? -twice : twice) / 2;
}

}  // namespace gi

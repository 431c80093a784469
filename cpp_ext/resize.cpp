#include "resize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "resample_kernel.h"

namespace gi {

namespace {

// Pillow's PRECISION_BITS: the most fraction bits a weight gets. With weights summing to
// 2^bits and pixels 0..255, every sum stays within int32 (sum |weights| < 1.3 * 2^bits).
constexpr int kMaxBits = 22;

// Pillow's bicubic_filter (a = -0.5), same operation order so the weights are bit-identical.
double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

std::atomic<bool> g_portable_only{false};  // tests and benchmarks run the portable build here too

bool cpu_has_avx2() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return ok && avx2_compiled() && !g_portable_only.load();
#else
  return false;
#endif
}

}  // namespace

Axis make_axis(int in_size, int out_size) {
  // Pillow's precompute_coeffs with in0 = 0, in1 = in_size.
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  std::vector<int> xmins(out_size), counts(out_size);
  std::vector<double> k(static_cast<std::size_t>(out_size) * ksize);
  int taps = 1;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* kk = &k[static_cast<std::size_t>(xx) * ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      kk[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += kk[x];
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) kk[x] /= ww;
    xmins[xx] = xmin;
    counts[xx] = xmax;
    if (xmax > taps) taps = xmax;
  }
  // Pillow-SIMD's normalize_coeffs_8bpc: the most fraction bits that keep the largest weight
  // (rounded) below 2^15, then every weight rounded half away from zero.
  double maxkk = k[0];
  for (double v : k) maxkk = v > maxkk ? v : maxkk;
  int bits = 0;
  for (; bits < kMaxBits; ++bits)
    if (static_cast<int>(0.5 + maxkk * (1 << (bits + 1))) >= (1 << 15)) break;
  // One tap count for the axis: the longest window, rounded up to even (the kernels take taps
  // two at a time). Windows at the far edge start earlier so every tap stays inside the image;
  // their extra weights are zero and add nothing. An input narrower than that (an odd number of
  // pixels, all in the window) keeps start 0, and its last tap is a phantom: weight 0, read as 0.
  Axis axis;
  axis.taps = taps + (taps & 1);
  axis.bits = bits;
  taps = axis.taps;
  axis.start.resize(out_size);
  axis.weights.assign(static_cast<std::size_t>(out_size) * taps, 0);
  std::vector<int> q(ksize);  // one output's weights, rounded
  for (int xx = 0; xx < out_size; ++xx) {
    const int start = xmins[xx] + taps > in_size ? std::max(in_size - taps, 0) : xmins[xx];
    axis.start[xx] = start;
    const double* kk = &k[static_cast<std::size_t>(xx) * ksize];
    int residual = 1 << bits;
    for (int x = 0; x < counts[xx]; ++x) {
      const double v = kk[x] * (1 << bits);
      q[x] = static_cast<int>(v < 0 ? v - 0.5 : v + 0.5);
      residual -= q[x];
    }
    // The rounded weights rarely sum to 2^bits, which would brighten or darken flat areas by
    // up to a few 2^-15: the residual is put back one unit at a time, each time on the
    // (non-zero) weight whose rounding that step improves most (ties: the first). Without
    // this, 0.24% of the values on PolypGen are a grey level from Pillow's, 29 of them two.
    while (residual != 0) {
      const int step = residual > 0 ? 1 : -1;
      int best = -1;
      double best_error = 0.0;
      for (int x = 0; x < counts[xx]; ++x) {
        if (kk[x] == 0.0 || std::abs(q[x] + step) > 32767) continue;
        const double error = std::fabs(static_cast<double>(q[x] + step) - kk[x] * (1 << bits));
        if (best < 0 || error < best_error) best = x, best_error = error;
      }
      if (best < 0) break;  // no weight to take it (not met: the weights sum to 1)
      q[best] += step;
      residual -= step;
    }
    std::int16_t* w = &axis.weights[static_cast<std::size_t>(xx) * taps];
    for (int x = 0; x < counts[xx]; ++x) w[x + xmins[xx] - start] = static_cast<std::int16_t>(q[x]);
  }
  const auto pair = [](const std::int16_t* w) {
    return static_cast<std::int32_t>(static_cast<std::uint16_t>(w[0]) |
                                     static_cast<std::uint32_t>(static_cast<std::uint16_t>(w[1])) << 16);
  };
  const int half = taps / 2;
  // the vertical pass's layout: each output's non-zero weights from an even input on
  axis.pair_start.resize(out_size);
  axis.pair_count.resize(out_size);
  for (int x = 0; x < out_size; ++x) {
    const std::int16_t* w = &axis.weights[static_cast<std::size_t>(x) * taps];
    int lo = 0, hi = taps - 1;
    while (lo < hi && w[lo] == 0) ++lo;
    while (hi > lo && w[hi] == 0) --hi;
    const int first = (axis.start[x] + lo) & ~1;
    axis.pair_start[x] = first;
    axis.pair_count[x] = (axis.start[x] + hi - first) / 2 + 1;
    axis.window_pairs = std::max(axis.window_pairs, axis.pair_count[x]);
  }
  axis.aligned.assign(static_cast<std::size_t>(out_size) * axis.window_pairs, 0);
  for (int x = 0; x < out_size; ++x) {
    const int shift = axis.start[x] - axis.pair_start[x];  // 1 when the window starts at an odd row
    for (int j = 0; j < axis.pair_count[x]; ++j) {
      std::int16_t two[2];
      for (int b = 0; b < 2; ++b) {
        const int k = 2 * j + b - shift;  // tap of the table
        two[b] = k >= 0 && k < taps ? axis.weights[static_cast<std::size_t>(x) * taps + k] : 0;
      }
      axis.aligned[static_cast<std::size_t>(x) * axis.window_pairs + j] = pair(two);
    }
  }
  const int groups = (out_size + 7) / 8 * 2;
  axis.grouped.resize(static_cast<std::size_t>(groups) * half * 4);
  axis.group_at.resize(static_cast<std::size_t>(groups) * 5);
  for (int g = 0; g < groups; ++g) {
    const int base = axis.start[std::min(4 * g, out_size - 1)];
    axis.group_at[5 * g] = base;
    for (int i = 0; i < 4; ++i) {
      const int x = std::min(4 * g + i, out_size - 1);
      axis.group_at[5 * g + 1 + i] = axis.start[x] - base;
      for (int j = 0; j < half; ++j)
        axis.grouped[(static_cast<std::size_t>(g) * half + j) * 4 + i] =
            pair(&axis.weights[static_cast<std::size_t>(x) * taps + 2 * j]);
    }
  }
  return axis;
}

std::shared_ptr<const Axis> cached_axis(int in_size, int out_size) {
  struct Entry {
    int in, out;
    std::shared_ptr<const Axis> axis;
  };
  static std::mutex lock;
  static std::vector<Entry> recent;  // the most recently used last
  {
    std::lock_guard<std::mutex> hold(lock);
    for (std::size_t i = 0; i < recent.size(); ++i)
      if (recent[i].in == in_size && recent[i].out == out_size) {
        const Entry e = recent[i];
        recent.erase(recent.begin() + static_cast<std::ptrdiff_t>(i));
        recent.push_back(e);
        return e.axis;
      }
  }
  auto axis = std::make_shared<const Axis>(make_axis(in_size, out_size));
  std::lock_guard<std::mutex> hold(lock);
  if (recent.size() >= 8) recent.erase(recent.begin());
  recent.push_back({in_size, out_size, axis});
  return axis;
}

std::size_t scratch_bytes(const ResampleTask& t) { return Resampler<PortableLanes>::scratch_size(t); }

void resample_rows_portable(const ResampleTask& t, int y0, int y1, void* scratch) {
  Resampler<PortableLanes>(t, scratch).run(y0, y1);
}

const char* resample_isa() { return cpu_has_avx2() ? "avx2" : "portable"; }

bool set_resample_isa(const char* name) {
  if (std::strcmp(name, "portable") == 0)
    g_portable_only = true;
  else if (std::strcmp(name, "auto") == 0)
    g_portable_only = false;
  else
    return false;
  return true;
}

namespace {

// Output columns per column tile of the horizontal pass: as many (in 8s) as keep the tile's
// pair columns (32 bytes per input byte: 8 rows x 2 int16) within 16 KB, half the level-1
// cache, so that they stay there while the tile's multiply-adds read them.
int tile_width(const ResampleTask& t) {
  constexpr double kBlockBytes = 16384;
  const double per_output = static_cast<double>(t.in_w) / t.out_w;
  int tile = 8;
  while (tile < t.out_w && ((tile + 8) * per_output + t.ax.taps) * t.channels * 32 <= kBlockBytes) tile += 8;
  return tile;
}

// The calling thread's scratch, kept from frame to frame. On Linux it is 2 MB-aligned memory
// the kernel is asked to back with a huge page: the ring of resampled rows alone spans ~32
// small pages, and a TLB miss costs most under a hypervisor (nested page walks) - measured on
// a KVM guest, 1080p -> 768 took 0.7 ms (25%) longer on small pages.
unsigned char* thread_scratch(std::size_t bytes) {
  struct Block {
    unsigned char* data = nullptr;
    std::size_t bytes = 0;
    ~Block() { release(); }
    void release() {
#ifdef __linux__
      std::free(data);
#else
      ::operator delete[](data, std::align_val_t{64});
#endif
      data = nullptr;
    }
  };
  thread_local Block block;
  if (block.bytes < bytes) {
    block.release();
#ifdef __linux__
    constexpr std::size_t kHuge = std::size_t{1} << 21;
    const std::size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
    block.data = static_cast<unsigned char*>(std::aligned_alloc(kHuge, size));
    if (block.data == nullptr) throw std::bad_alloc();
    madvise(block.data, size, MADV_HUGEPAGE);  // a hint: without huge pages it works the same
    block.bytes = size;
#else
    block.data = static_cast<unsigned char*>(::operator new[](bytes, std::align_val_t{64}));
    block.bytes = bytes;
#endif
  }
  return block.data;
}

// Outputs past this size are written with non-temporal stores: they would not stay in the
// level-2 cache anyway, and the stores then skip reading the old contents first.
constexpr std::size_t kStreamBytes = std::size_t{1} << 20;

}  // namespace

void resample(ResampleTask& t, int threads) {
  auto* run = cpu_has_avx2() ? &resample_rows_avx2 : &resample_rows_portable;
  t.tile = tile_width(t);
  t.stream = !t.half && std::size_t{3} * t.out_h * t.out_w * sizeof(float) >= kStreamBytes;
  // a band shorter than ~32 rows costs more in repeated vertical support than it saves
  int bands = threads < 1 ? 1 : threads;
  if (bands > t.out_h / 32) bands = t.out_h / 32 > 0 ? t.out_h / 32 : 1;
  const std::size_t per = scratch_bytes(t);  // a multiple of 64: every thread's part stays aligned
  unsigned char* scratch = thread_scratch(per * bands);
  if (bands == 1) {
    run(t, 0, t.out_h, scratch);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(bands - 1);
  for (int b = 1; b < bands; ++b) {
    const int y0 = static_cast<int>(static_cast<long long>(t.out_h) * b / bands);
    const int y1 = static_cast<int>(static_cast<long long>(t.out_h) * (b + 1) / bands);
    pool.emplace_back(run, std::cref(t), y0, y1, scratch + per * b);
  }
  run(t, 0, static_cast<int>(static_cast<long long>(t.out_h) / bands), scratch);
  for (auto& th : pool) th.join();
}

}  // namespace gi

#include "resize.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "resample_kernel.h"

namespace gi {

namespace {

constexpr float kMinWeight = 1.0f / (1 << 20);

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
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
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
  // One tap count for the axis: the longest window. Windows at the far edge start earlier so
  // every tap stays inside the image; their extra leading weights are zero and add nothing.
  Axis axis;
  axis.taps = taps;
  axis.start.resize(out_size);
  axis.weights.assign(static_cast<std::size_t>(out_size) * taps, 0.0f);
  for (int xx = 0; xx < out_size; ++xx) {
    const int start = xmins[xx] + taps > in_size ? in_size - taps : xmins[xx];
    axis.start[xx] = start;
    float* w = &axis.weights[static_cast<std::size_t>(xx) * taps];
    for (int x = 0; x < counts[xx]; ++x) {
      const float v = static_cast<float>(k[static_cast<std::size_t>(xx) * ksize + x]);
      // below 2^-20 a weight is dropped: the remaining ones keep every fused multiply-add of
      // the kernels exact in double precision, which is what lets the numpy twin match it
      w[x + xmins[xx] - start] = std::fabs(v) < kMinWeight ? 0.0f : v;
    }
  }
  return axis;
}

std::size_t scratch_floats(const ResampleTask& t) { return Resampler<PortableLanes>::scratch_size(t); }

void resample_rows_portable(const ResampleTask& t, int y0, int y1, float* scratch) {
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

void resample(const ResampleTask& t, int threads) {
  auto* run = cpu_has_avx2() ? &resample_rows_avx2 : &resample_rows_portable;
  // a band shorter than ~32 rows costs more in repeated vertical support than it saves
  int bands = threads < 1 ? 1 : threads;
  if (bands > t.out_h / 32) bands = t.out_h / 32 > 0 ? t.out_h / 32 : 1;
  const std::size_t per = scratch_floats(t);
  std::vector<float> scratch(per * bands);
  if (bands == 1) {
    run(t, 0, t.out_h, scratch.data());
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(bands - 1);
  for (int b = 1; b < bands; ++b) {
    const int y0 = static_cast<int>(static_cast<long long>(t.out_h) * b / bands);
    const int y1 = static_cast<int>(static_cast<long long>(t.out_h) * (b + 1) / bands);
    pool.emplace_back(run, std::cref(t), y0, y1, scratch.data() + per * b);
  }
  run(t, 0, static_cast<int>(static_cast<long long>(t.out_h) / bands), scratch.data());
  for (auto& th : pool) th.join();
}

}  // namespace gi

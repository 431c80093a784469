// The one pybind11 binding file: gi_sdk._native. Strict at the boundary (checks.h: dense arrays
// of the documented dtype only, ValueError otherwise), GIL released while working.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "checks.h"
#include "fov.h"
#include "geometry.h"
#include "location.h"
#include "resize.h"
#include "token_decoder.h"

namespace py = pybind11;
using gi::require_dense;

namespace gi {
void bind_id_decoder(py::module_& m);  // id_decoder.cpp
}

namespace {

// ------------------------------------------------------------------------ location codec

void check_size(float width, float height) {
  if (!(width > 0) || !(height > 0))
    throw py::value_error("image size must be positive, got width=" + std::to_string(width) +
                          " height=" + std::to_string(height));
}

void check_pairs(const py::array& a, const char* name) {
  if (a.ndim() < 1 || a.shape(a.ndim() - 1) % 2 != 0)
    throw py::value_error(std::string(name) + ": last axis must hold x, y pairs (even length)");
}

py::array_t<std::int32_t> quantize(const py::handle& coords_obj, float width, float height) {
  auto coords = require_dense<float>(coords_obj, "coords", "float32");
  check_size(width, height);
  check_pairs(coords, "coords");
  py::array_t<std::int32_t> bins(std::vector<py::ssize_t>(coords.shape(), coords.shape() + coords.ndim()));
  const float* src = coords.data();
  std::int32_t* dst = bins.mutable_data();
  const auto n = static_cast<std::size_t>(coords.size());
  {
    py::gil_scoped_release release;
    gi::quantize_xy(src, n, width, height, dst);
  }
  return bins;
}

py::array_t<float> dequantize(const py::handle& bins_obj, float width, float height) {
  auto bins = require_dense<std::int32_t>(bins_obj, "bins", "int32");
  check_size(width, height);
  check_pairs(bins, "bins");
  py::array_t<float> out(std::vector<py::ssize_t>(bins.shape(), bins.shape() + bins.ndim()));
  const std::int32_t* src = bins.data();
  float* dst = out.mutable_data();
  const auto n = static_cast<std::size_t>(bins.size());
  {
    py::gil_scoped_release release;
    gi::dequantize_xy(src, n, width, height, dst);
  }
  return out;
}

// ---------------------------------------------------------------------------- preprocess

// A frame: HxWx3 or HxWx4 uint8 whose pixels are packed; rows may be strided (a view of a
// crop of a bigger array is taken without a copy).
py::array frame_array(const py::handle& obj) {
  auto a = gi::as_array(obj, "frame", "HxWx3 or HxWx4 uint8");
  if (!gi::has_dtype<std::uint8_t>(a))
    throw py::value_error("frame: expected dtype uint8, got " + std::string(py::str(a.dtype())));
  if (a.ndim() != 3 || (a.shape(2) != 3 && a.shape(2) != 4))
    throw py::value_error("frame: expected shape (H, W, 3) or (H, W, 4), got " + gi::shape_str(a));
  if (a.shape(0) < 1 || a.shape(1) < 1) throw py::value_error("frame: expected at least 1x1 pixels, got " + gi::shape_str(a));
  if (a.strides(2) != 1 || a.strides(1) != a.shape(2) || a.strides(0) < a.shape(1) * a.shape(2))
    throw py::value_error("frame: expected packed pixels and rows in order (use np.ascontiguousarray)");
  return a;
}

py::array resize_normalize(const py::handle& frame_obj, const py::handle& out_obj, std::array<int, 4> crop,
                           std::array<int, 3> channel_map, std::array<float, 3> scale, std::array<float, 3> bias,
                           int threads) {
  py::array frame = frame_array(frame_obj);
  py::array out = gi::as_array(out_obj, "out", "(3, H, W) float32 or float16");
  const bool half = gi::is_float16(out);
  if (!half && !gi::has_dtype<float>(out))
    throw py::value_error("out: expected dtype float32 or float16, got " + std::string(py::str(out.dtype())));
  if (out.ndim() != 3 || out.shape(0) != 3 || out.shape(1) < 1 || out.shape(2) < 1)
    throw py::value_error("out: expected shape (3, H, W) with H, W >= 1, got " + gi::shape_str(out));
  if (!(out.flags() & py::array::c_style) || !out.writeable())
    throw py::value_error("out: expected a writeable C-contiguous array");
  const int fh = static_cast<int>(frame.shape(0)), fw = static_cast<int>(frame.shape(1));
  const int cn = static_cast<int>(frame.shape(2));
  const auto [x, y, w, h] = crop;
  if (x < 0 || y < 0 || w < 1 || h < 1 || x > fw - w || y > fh - h)
    throw py::value_error("crop: expected (x, y, w, h) inside the " + std::to_string(fw) + "x" + std::to_string(fh) +
                          " frame with w, h >= 1, got (" + std::to_string(x) + ", " + std::to_string(y) + ", " +
                          std::to_string(w) + ", " + std::to_string(h) + ")");
  for (int c : channel_map)
    if (c < 0 || c >= cn) throw py::value_error("channel_map: expected channel indices below " + std::to_string(cn));
  for (int c = 0; c < 3; ++c)
    if (!std::isfinite(scale[c]) || !std::isfinite(bias[c])) throw py::value_error("scale, bias: expected finite values");
  if (threads < 1 || threads > 256) throw py::value_error("threads: expected 1..256, got " + std::to_string(threads));

  const int oh = static_cast<int>(out.shape(1)), ow = static_cast<int>(out.shape(2));
  const auto* base = static_cast<const std::uint8_t*>(frame.data());
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    const auto ax = gi::cached_axis(w, ow), ay = gi::cached_axis(h, oh);
    gi::ResampleTask t{};
    t.src = base + static_cast<std::ptrdiff_t>(y) * frame.strides(0) + static_cast<std::ptrdiff_t>(x) * cn;
    t.src_stride = frame.strides(0);
    t.channels = cn;
    t.in_w = w;
    t.in_h = h;
    for (int c = 0; c < 3; ++c) {
      t.map[c] = channel_map[c];
      t.scale[c] = scale[c];
      t.bias[c] = bias[c];
    }
    t.out_w = ow;
    t.out_h = oh;
    t.out = dst;
    t.half = half;
    t.ax = ax->view();
    t.ay = ay->view();
    gi::resample(t, threads);
  }
  return out;
}

py::tuple resize_weights(int in_size, int out_size) {
  if (in_size < 1 || out_size < 1) throw py::value_error("sizes must be >= 1");
  const gi::Axis axis = gi::make_axis(in_size, out_size);
  py::array_t<std::int32_t> start(out_size);
  std::copy(axis.start.begin(), axis.start.end(), start.mutable_data());
  py::array_t<std::int16_t> weights({out_size, axis.taps});
  std::copy(axis.weights.begin(), axis.weights.end(), weights.mutable_data());
  return py::make_tuple(start, weights, axis.bits);
}


// ----------------------------------------------------------------------------------- fov

py::tuple find_fov(const py::handle& frame_obj, int threshold, double min_fill, int step) {
  py::array frame = frame_array(frame_obj);
  if (threshold < 0 || threshold > 255) throw py::value_error("threshold: expected 0..255, got " + std::to_string(threshold));
  if (!(min_fill > 0.0 && min_fill <= 1.0)) throw py::value_error("min_fill: expected a number in (0, 1]");
  if (step < 1) throw py::value_error("step: expected >= 1, got " + std::to_string(step));
  gi::FovRect r{};
  const auto* data = static_cast<const std::uint8_t*>(frame.data());
  const auto stride = frame.strides(0);
  const int h = static_cast<int>(frame.shape(0)), w = static_cast<int>(frame.shape(1)), cn = static_cast<int>(frame.shape(2));
  {
    py::gil_scoped_release release;
    r = gi::find_fov(data, stride, h, w, cn, step, threshold, min_fill);
  }
  return py::make_tuple(r.x, r.y, r.w, r.h);
}

// ------------------------------------------------------------------------------ geometry

// Polygon vertices are clamped to +-2^16 px (8x an 8K frame): OpenCV's 16.16 fixed-point edge
// arithmetic cannot overflow, and its scanline, which walks every row from the topmost
// vertex, stays short for absurd coordinates.
constexpr float kMaxCoord = 1 << 16;

py::array_t<bool> polygons_to_mask(const py::sequence& polygons, int height, int width) {
  if (height < 0 || width < 0)
    throw py::value_error("height, width: expected >= 0, got " + std::to_string(height) + ", " + std::to_string(width));
  std::vector<std::vector<std::int32_t>> pts;
  for (const py::handle& obj : polygons) {
    auto poly = require_dense<float>(obj, "polygon", "float32");
    if (poly.ndim() != 2 || poly.shape(1) != 2)
      throw py::value_error("polygon: expected shape (K, 2), got " + gi::shape_str(poly));
    gi::require_finite(poly.data(), static_cast<std::size_t>(poly.size()), "polygon");
    if (poly.shape(0) < 3) continue;  // no area: skipped, as Result.masks does
    std::vector<std::int32_t> v(static_cast<std::size_t>(poly.size()));
    for (std::size_t i = 0; i < v.size(); ++i) {
      // continuous coordinates -> OpenCV's pixel-centre integers: round(x - 0.5), half to even
      const float c = std::min(std::max(poly.data()[i] - 0.5f, -kMaxCoord), kMaxCoord);
      v[i] = static_cast<std::int32_t>(std::nearbyint(c));
    }
    pts.push_back(std::move(v));
  }
  py::array_t<bool> mask({height, width});
  auto* m = reinterpret_cast<std::uint8_t*>(mask.mutable_data());
  {
    py::gil_scoped_release release;
    std::memset(m, 0, static_cast<std::size_t>(height) * width);
    std::vector<gi::IntPolygon> view;
    for (const auto& v : pts) view.push_back({v.data(), static_cast<int>(v.size() / 2)});
    if (height > 0 && width > 0) gi::fill_polygons(m, height, width, view);
  }
  return mask;
}

py::array_t<float> box_iou(const py::handle& a_obj, const py::handle& b_obj) {
  auto a = require_dense<float>(a_obj, "a", "float32");
  auto b = require_dense<float>(b_obj, "b", "float32");
  if (a.ndim() != 2 || a.shape(1) != 4) throw py::value_error("a: expected shape (N, 4), got " + gi::shape_str(a));
  if (b.ndim() != 2 || b.shape(1) != 4) throw py::value_error("b: expected shape (M, 4), got " + gi::shape_str(b));
  gi::require_finite(a.data(), static_cast<std::size_t>(a.size()), "a");
  gi::require_finite(b.data(), static_cast<std::size_t>(b.size()), "b");
  const int n = static_cast<int>(a.shape(0)), m = static_cast<int>(b.shape(0));
  py::array_t<float> out({n, m});
  const float *pa = a.data(), *pb = b.data();
  float* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    gi::box_iou(pa, n, pb, m, po);
  }
  return out;
}

py::array_t<float> mask_iou(const py::handle& a_obj, const py::handle& b_obj) {
  auto a = require_dense<bool>(a_obj, "a", "bool");
  auto b = require_dense<bool>(b_obj, "b", "bool");
  gi::require_ndim(a, 3, "a", "(N, H, W)");
  gi::require_ndim(b, 3, "b", "(M, H, W)");
  if (a.shape(1) != b.shape(1) || a.shape(2) != b.shape(2))
    throw py::value_error("a, b: expected masks of one size, got " + gi::shape_str(a) + " and " + gi::shape_str(b));
  const int n = static_cast<int>(a.shape(0)), m = static_cast<int>(b.shape(0));
  const std::size_t pixels = static_cast<std::size_t>(a.shape(1)) * a.shape(2);
  py::array_t<float> out({n, m});
  const auto* pa = reinterpret_cast<const std::uint8_t*>(a.data());
  const auto* pb = reinterpret_cast<const std::uint8_t*>(b.data());
  float* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    gi::mask_iou(pa, n, pb, m, pixels, po);
  }
  return out;
}

double polygon_area(const py::handle& obj) {
  auto poly = require_dense<float>(obj, "polygon", "float32");
  if (poly.ndim() != 2 || poly.shape(1) != 2) throw py::value_error("polygon: expected shape (K, 2), got " + gi::shape_str(poly));
  gi::require_finite(poly.data(), static_cast<std::size_t>(poly.size()), "polygon");
  return gi::polygon_area(poly.data(), static_cast<int>(poly.shape(0)));
}

// ------------------------------------------------------------------------- token decoder

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, py::ssize_t cols) {
  py::array_t<T> a(cols > 0 ? std::vector<py::ssize_t>{static_cast<py::ssize_t>(v.size()) / cols, cols}
                            : std::vector<py::ssize_t>{static_cast<py::ssize_t>(v.size())});
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::array_t<float> centres(const std::vector<std::int32_t>& bins, py::ssize_t cols, float width, float height) {
  py::array_t<float> a(std::vector<py::ssize_t>{static_cast<py::ssize_t>(bins.size()) / cols, cols});
  gi::dequantize_xy(bins.data(), bins.size(), width, height, a.mutable_data());
  return a;
}

py::tuple decode_tokens(const py::handle& ids_obj, const py::handle& classes_obj, std::int64_t loc_begin, int grammar,
                        float width, float height) {
  auto ids = gi::as_array(ids_obj, "ids", "1-D int64 or int32");
  const bool wide = gi::has_dtype<std::int64_t>(ids);
  if (!wide && !gi::has_dtype<std::int32_t>(ids))
    throw py::value_error("ids: expected dtype int64 or int32, got " + std::string(py::str(ids.dtype())));
  gi::require_ndim(ids, 1, "ids", "(T,)");
  if (!(ids.flags() & py::array::c_style)) throw py::value_error("ids: expected a C-contiguous array");
  auto classes = require_dense<std::uint8_t>(classes_obj, "classes", "uint8");
  gi::require_ndim(classes, 1, "classes", "(vocab,)");
  if (grammar < 0 || grammar > 7) throw py::value_error("grammar: expected a code 0..7, got " + std::to_string(grammar));
  check_size(width, height);
  gi::Decoded d;
  const std::size_t n = static_cast<std::size_t>(ids.shape(0)), nc = static_cast<std::size_t>(classes.shape(0));
  const void* data = ids.data();
  const std::uint8_t* cls = classes.data();
  {
    py::gil_scoped_release release;
    if (wide)
      gi::decode_tokens(static_cast<const std::int64_t*>(data), n, cls, nc, loc_begin, grammar, d);
    else
      gi::decode_tokens(static_cast<const std::int32_t*>(data), n, cls, nc, loc_begin, grammar, d);
  }
  return py::make_tuple(d.exact, to_array(d.events, 2), to_array(d.labels, 3), centres(d.box_bins, 4, width, height),
                        to_array(d.box_label, 0), centres(d.ring_bins, 2, width, height), to_array(d.rings, 0),
                        to_array(d.instances, 0), to_array(d.instance_label, 0), centres(d.point_bins, 2, width, height),
                        to_array(d.point_event, 0), to_array(d.texts, 4), to_array(d.event_text, 0),
                        to_array(d.label_text, 0));
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "gi_sdk native pre/post-processing (pybind11). Each function has a numpy twin in gi_sdk.";
  m.attr("NUM_BINS") = gi::kNumBins;
  m.def("quantize", &quantize, py::arg("coords"), py::arg("width"), py::arg("height"),
        "Pixel coordinates (float32, ..., 2k: x, y pairs) -> Florence-2 location bins (int32).");
  m.def("dequantize", &dequantize, py::arg("bins"), py::arg("width"), py::arg("height"),
        "Florence-2 location bins (int32, ..., 2k) -> bin-centre pixel coordinates (float32).");
  m.def("resize_normalize", &resize_normalize, py::arg("frame"), py::arg("out"), py::arg("crop"),
        py::arg("channel_map"), py::arg("scale"), py::arg("bias"), py::arg("threads") = 1,
        "Crop, resize (Pillow's antialiased bicubic, 8-bit rounding), normalize into out (3, H, W).");
  m.def("resize_weights", &resize_weights, py::arg("in_size"), py::arg("out_size"),
        "The (start, int16 weights, fraction bits) table of one axis, as resize_normalize uses it.");
  m.def("resize_isa", &gi::resample_isa, "Instruction set the resampler runs on this CPU: 'avx2' or 'portable'.");
  m.def(
      "set_resize_isa",
      [](const std::string& name) {
        if (!gi::set_resample_isa(name.c_str()))
          throw py::value_error("isa: expected 'portable' or 'auto', got '" + name + "'");
        return std::string(gi::resample_isa());
      },
      py::arg("isa"), "'portable' forces the portable resampler (tests, benchmarks); 'auto' picks by CPU.");
  m.def("find_fov", &find_fov, py::arg("frame"), py::arg("threshold") = 40, py::arg("min_fill") = 0.1,
        py::arg("step") = 4, "(x, y, w, h) of the scope image inside the black border of frame.");
  m.def("polygons_to_mask", &polygons_to_mask, py::arg("polygons"), py::arg("height"), py::arg("width"),
        "Polygons ((K, 2) float32 each) -> (height, width) bool mask, as cv2.fillPoly of round(p - 0.5).");
  m.def("box_iou", &box_iou, py::arg("a"), py::arg("b"), "(N, 4), (M, 4) float32 xyxy -> (N, M) float32 IoU.");
  m.def("mask_iou", &mask_iou, py::arg("a"), py::arg("b"), "(N, H, W), (M, H, W) bool -> (N, M) float32 IoU.");
  m.def("polygon_area", &polygon_area, py::arg("polygon"), "Shoelace area of a (K, 2) float32 polygon.");
  m.def("decode_tokens", &decode_tokens, py::arg("ids"), py::arg("classes"), py::arg("loc_begin"), py::arg("grammar"),
        py::arg("width"), py::arg("height"),
        "Token ids -> (exact, events, labels, boxes, box_label, ring points, rings, instances, instance_label, "
        "points, point_event, texts, event_text, label_text); see gi_sdk.token_decoder.decode_tokens_python.");
  gi::bind_id_decoder(m);
}

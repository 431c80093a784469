// The one pybind11 binding file: gi_sdk._native. Strict at the boundary (dense arrays of the
// documented dtype only, ValueError otherwise), GIL released while working.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "location.h"

namespace py = pybind11;

namespace {

template <typename T>
py::array_t<T> require_dense(const py::handle& obj, const char* name, const char* dtype_name) {
  if (!py::isinstance<py::array>(obj))
    throw py::value_error(std::string(name) + ": expected a numpy array of " + dtype_name + ", got " +
                          std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>()))
    throw py::value_error(std::string(name) + ": expected dtype " + dtype_name + ", got " +
                          std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array (use np.ascontiguousarray)");
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

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

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "gi_sdk native pre/post-processing (pybind11). Each function has a numpy twin in gi_sdk.";
  m.attr("NUM_BINS") = gi::kNumBins;
  m.def("quantize", &quantize, py::arg("coords"), py::arg("width"), py::arg("height"),
        "Pixel coordinates (float32, ..., 2k: x, y pairs) -> Florence-2 location bins (int32).");
  m.def("dequantize", &dequantize, py::arg("bins"), py::arg("width"), py::arg("height"),
        "Florence-2 location bins (int32, ..., 2k) -> bin-centre pixel coordinates (float32).");
}

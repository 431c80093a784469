// Boundary checks shared by the bindings: every array that crosses into C++ is checked here,
// and anything unexpected becomes a ValueError that names what was expected and what came.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

namespace gi {
namespace py = pybind11;

inline std::string type_name(const py::handle& obj) {
  return std::string(py::str(py::type::of(obj).attr("__name__")));
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline py::array as_array(const py::handle& obj, const char* name, const char* expected) {
  if (!py::isinstance<py::array>(obj))
    throw py::value_error(std::string(name) + ": expected a numpy array (" + expected + "), got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// The dtype of `a` is T's, in native byte order. Compared by value: an equal dtype object
// made elsewhere (an unpickled array has its own) is the same dtype.
template <typename T>
bool has_dtype(const py::array& a) {
  const py::dtype want = py::dtype::of<T>();
  return a.dtype().is(want) || a.dtype().equal(want);
}

inline bool is_float16(const py::array& a) {
  static const py::dtype* half = new py::dtype("float16");  // never destroyed: outlives the interpreter safely
  return a.dtype().is(*half) || a.dtype().equal(*half);
}

// A C-contiguous array of exactly dtype T.
template <typename T>
py::array_t<T> require_dense(const py::handle& obj, const char* name, const char* dtype_name) {
  auto arr = as_array(obj, name, dtype_name);
  if (!has_dtype<T>(arr))
    throw py::value_error(std::string(name) + ": expected dtype " + dtype_name + ", got " + std::string(py::str(arr.dtype())));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array (use np.ascontiguousarray)");
  return py::reinterpret_borrow<py::array_t<T>>(arr);
}

inline void require_ndim(const py::array& a, py::ssize_t ndim, const char* name, const char* layout) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected shape " + layout + ", got " + shape_str(a));
}

inline void require_finite(const float* p, std::size_t n, const char* name) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) throw py::value_error(std::string(name) + ": expected finite coordinates, got NaN or inf");
}

}  // namespace gi

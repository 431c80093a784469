// gi_sdk.decode_ids in one native call: token ids -> a gi_sdk Parsed (text, boxes,
// box_labels, polygons, polygon_labels, points, point_labels), exactly what
// sdk/token_decoder.py's Python assembly (_assemble) builds from decode_tokens' arrays.
//
// The label and answer texts need the tokenizer, which lives in Python: IdDecoder asks a
// Python function for the text of a span of ids the first time it meets that span and keeps
// the answer (a model repeats its labels: "polyp" ten times is one call, ever). Everything
// else - the token grammar (token_decoder.cpp), the coordinates, the keep/drop rules of the
// labels, the arrays and lists - is done here, so a call costs a few microseconds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "checks.h"
#include "location.h"
#include "token_decoder.h"

namespace py = pybind11;

namespace gi {

namespace {

constexpr std::size_t kMaxCachedTexts = 4096;  // then the cache starts over

// A new C-contiguous (rows, cols) float32 array, made by numpy's C API as pybind11's own
// array constructor does, minus its generic shape handling (half the cost: a segmentation
// result holds one small array per ring).
py::object float_array(std::size_t rows, std::size_t cols, float** data) {
  auto& api = py::detail::npy_api::get();
  const Py_intptr_t dims[2] = {static_cast<Py_intptr_t>(rows), static_cast<Py_intptr_t>(cols)};
  PyObject* descr = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_FLOAT_);  // stolen below
  PyObject* a = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 2, dims, nullptr, nullptr, 0, nullptr);
  if (a == nullptr) throw py::error_already_set();
  *data = reinterpret_cast<float*>(py::detail::array_proxy(a)->data);
  return py::reinterpret_steal<py::object>(a);
}

// (pairs, 2) float32 array of the centres of x, y pairs of bins.
py::object centres(const std::int32_t* bins, std::size_t pairs, float width, float height) {
  float* data = nullptr;
  py::object a = float_array(pairs, 2, &data);
  dequantize_xy(bins, 2 * pairs, width, height, data);
  return a;
}

py::object steal(PyObject* obj) {
  if (obj == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(obj);
}

class IdDecoder {
 public:
  // classes, loc_begin: as TokenVocab holds them. span_text(ids: list[int], tail_id: int,
  // phrase: bool) -> str | None gives the text of a span (TokenVocab's rules).
  // no_boxes, no_points: the shared empty (0, 4) and (0, 2) arrays of a result without them.
  // parsed: the class of the result, called with the seven fields; fill: its fields' names when
  // instead of calling it the decoder may make it as object.__new__ and set each field with
  // object.__setattr__ - all a frozen dataclass's __init__ does, at a fraction of its cost
  // (the caller checks that this holds), else None.
  IdDecoder(const py::handle& classes_obj, std::int64_t loc_begin, py::object span_text, py::object no_boxes,
            py::object no_points, py::object parsed, py::object fill)
      : loc_begin_(loc_begin), span_text_(std::move(span_text)), no_boxes_(std::move(no_boxes)),
        no_points_(std::move(no_points)), parsed_(std::move(parsed)) {
    if (!PyType_Check(parsed_.ptr())) throw py::type_error("parsed: expected a class");
    if (!fill.is_none()) {
      for (const py::handle name : fill) fill_.push_back(py::reinterpret_borrow<py::str>(name));
      if (fill_.size() != 7) throw py::value_error("fill: expected the 7 field names of the result");
    }
    auto classes = require_dense<std::uint8_t>(classes_obj, "classes", "uint8");
    require_ndim(classes, 1, "classes", "(vocab,)");
    classes_.assign(classes.data(), classes.data() + classes.size());
  }

  // The fields of the Parsed, or None when the ids cannot be read on tokens (an ordinary
  // token holds a '<': the caller parses the decoded text instead).
  py::object decode(const py::handle& ids_obj, int grammar, const py::handle& image_size, const py::handle& banned) {
    if (grammar < 0 || grammar > kPoints)
      throw py::value_error("grammar: expected a code 0..7, got " + std::to_string(grammar));
    py::array ids = id_array(ids_obj);
    float width = 1.0f, height = 1.0f;
    if (!image_size.is_none()) read_size(image_size, width, height);
    thread_local Decoded d;  // its vectors keep their memory from call to call
    d.clear();
    const std::size_t n = static_cast<std::size_t>(ids.shape(0));
    const bool wide = ids.dtype().itemsize() == 8;
    {
      py::gil_scoped_release release;
      const std::uint8_t* cls = classes_.data();
      if (wide)
        decode_tokens(static_cast<const std::int64_t*>(ids.data()), n, cls, classes_.size(), loc_begin_, grammar, d);
      else
        decode_tokens(static_cast<const std::int32_t*>(ids.data()), n, cls, classes_.size(), loc_begin_, grammar, d);
    }
    if (!d.exact) return py::none();

    // each distinct text looked up once (strong references: a Python callback may run
    // another thread, which may empty the cache)
    if (cache_.size() > kMaxCachedTexts) cache_.clear();
    std::vector<py::object> text(d.texts.size() / 4);
    for (std::size_t u = 0; u < text.size(); ++u) text[u] = lookup(ids, &d.texts[4 * u]);
    auto event = [&](std::int32_t e) -> const py::object& { return text[d.event_text[e]]; };
    auto phrase = [&](std::int32_t l) -> const py::object& { return text[d.label_text[l]]; };

    py::list pieces;
    for (std::size_t e = 0; e < d.event_text.size(); ++e) {
      const py::object& t = event(static_cast<std::int32_t>(e));
      if (PyUnicode_GET_LENGTH(t.ptr()) > 0) pieces.append(t);
    }
    py::object answer = steal(PyUnicode_Join(space().ptr(), pieces.ptr()));

    py::object boxes = no_boxes_;
    py::list box_labels;
    if (!d.box_label.empty()) {
      std::vector<std::int32_t> kept;
      kept.reserve(d.box_bins.size());
      for (std::size_t b = 0; b < d.box_label.size(); ++b) {
        const std::int32_t l = d.box_label[b];
        if (l >= 0) {
          const py::object& p = phrase(l);
          if (p.is_none() || (!banned.is_none() && contains(banned, p))) continue;
          box_labels.append(ascii(p));
        } else {
          box_labels.append(empty());
        }
        kept.insert(kept.end(), d.box_bins.begin() + 4 * b, d.box_bins.begin() + 4 * b + 4);
      }
      float* data = nullptr;
      boxes = float_array(kept.size() / 4, 4, &data);
      dequantize_xy(kept.data(), kept.size(), width, height, data);
    }

    py::list polygons, polygon_labels;
    for (std::size_t i = 0; i < d.instance_label.size(); ++i) {
      const py::object& p = phrase(d.instance_label[i]);
      if (p.is_none()) continue;
      py::list rings;
      for (std::int32_t r = d.instances[i]; r < d.instances[i + 1]; ++r)
        rings.append(centres(d.ring_bins.data() + 2 * d.rings[r], d.rings[r + 1] - d.rings[r], width, height));
      polygons.append(std::move(rings));
      polygon_labels.append(p);
    }

    py::object points = no_points_;
    py::list point_labels;
    if (grammar == kPoints) {
      points = centres(d.point_bins.data(), d.point_bins.size() / 2, width, height);
      for (std::int32_t e : d.point_event) point_labels.append(e >= 0 ? event(e) : empty());
    }
    return make_result({answer, boxes, box_labels, polygons, polygon_labels, points, point_labels});
  }

 private:
  py::object make_result(std::initializer_list<py::object> fields) {
    if (fill_.empty()) {
      py::tuple args(fields.size());
      std::size_t i = 0;
      for (const py::object& f : fields) args[i++] = f;
      return parsed_(*args);
    }
    auto* type = reinterpret_cast<PyTypeObject*>(parsed_.ptr());
    py::object result = steal(PyBaseObject_Type.tp_new(type, empty_tuple().ptr(), nullptr));
    std::size_t i = 0;
    for (const py::object& f : fields)
      if (PyObject_GenericSetAttr(result.ptr(), fill_[i++].ptr(), f.ptr()) < 0) throw py::error_already_set();
    return result;
  }

  static const py::tuple& empty_tuple() {
    static const py::tuple* t = new py::tuple(0);
    return *t;
  }

  // ids: a 1-D int64 or int32 array; a strided view is read through a contiguous copy
  static py::array id_array(const py::handle& obj) {
    py::array ids = as_array(obj, "ids", "1-D int64 or int32");
    if (!has_dtype<std::int64_t>(ids) && !has_dtype<std::int32_t>(ids))
      throw py::value_error("ids: expected a 1-D int64 or int32 array, got dtype " + std::string(py::str(ids.dtype())));
    require_ndim(ids, 1, "ids", "(T,)");
    if (!(ids.flags() & py::array::c_style))
      ids = py::array(py::module_::import("numpy").attr("ascontiguousarray")(ids));
    return ids;
  }

  // (width, height) as float(size[0]), float(size[1]); positive and finite
  static void read_size(const py::handle& size, float& width, float& height) {
    double w = NAN, h = NAN;
    PyObject* first = PySequence_GetItem(size.ptr(), 0);
    PyObject* second = first ? PySequence_GetItem(size.ptr(), 1) : nullptr;
    if (second) {
      w = PyFloat_AsDouble(first);
      h = PyFloat_AsDouble(second);
    }
    Py_XDECREF(first);
    Py_XDECREF(second);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      w = h = NAN;
    }
    if (!(w > 0 && w < INFINITY && h > 0 && h < INFINITY))
      throw py::value_error("image size must be positive and finite, got " + std::string(py::repr(size)));
    width = static_cast<float>(w);
    height = static_cast<float>(h);
  }

  static std::int64_t id_at(const py::array& ids, std::int32_t k) {
    return ids.dtype().itemsize() == 8 ? static_cast<const std::int64_t*>(ids.data())[k]
                                       : static_cast<const std::int32_t*>(ids.data())[k];
  }

  // t: (start, end, tail index or -1, 1 for a label / 0 for an event), as Decoded lists them
  py::object lookup(const py::array& ids, const std::int32_t* t) {
    const bool label = t[3] != 0;
    const std::int64_t tail = t[2] >= 0 ? id_at(ids, t[2]) : -1;
    std::string key;
    key.reserve(sizeof(std::int64_t) * (t[1] - t[0] + 1) + 1);
    key.push_back(label ? 'l' : 'e');
    key.append(reinterpret_cast<const char*>(&tail), sizeof tail);
    for (std::int32_t k = t[0]; k < t[1]; ++k) {
      const std::int64_t id = id_at(ids, k);
      key.append(reinterpret_cast<const char*>(&id), sizeof id);
    }
    auto found = cache_.find(key);
    if (found != cache_.end()) return found->second;
    py::list span(t[1] - t[0]);
    for (std::int32_t k = t[0]; k < t[1]; ++k) span[k - t[0]] = py::int_(id_at(ids, k));
    py::object text = span_text_(span, tail, label);
    if (!(label && text.is_none()) && !PyUnicode_Check(text.ptr()))
      throw py::type_error("span_text: expected str (or None for a label)");
    cache_[key] = text;
    return text;
  }

  // label.encode("ascii", "ignore").decode("ascii"): in UTF-8 every byte of a non-ASCII
  // character is >= 0x80, so dropping those bytes drops exactly those characters
  static py::object ascii(const py::object& label) {
    if (PyUnicode_IS_ASCII(label.ptr())) return label;
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(label.ptr(), &size);
    if (utf8 == nullptr) throw py::error_already_set();
    std::string kept;
    for (Py_ssize_t i = 0; i < size; ++i)
      if (static_cast<unsigned char>(utf8[i]) < 0x80) kept.push_back(utf8[i]);
    return py::str(kept);
  }

  static bool contains(const py::handle& container, const py::object& item) {
    const int found = PySequence_Contains(container.ptr(), item.ptr());
    if (found < 0) throw py::error_already_set();
    return found == 1;
  }

  static const py::object& space() {
    static const py::object* s = new py::object(py::str(" "));  // never destroyed: outlives the interpreter safely
    return *s;
  }
  static const py::object& empty() {
    static const py::object* s = new py::object(py::str(""));
    return *s;
  }

  std::vector<std::uint8_t> classes_;
  std::int64_t loc_begin_;
  py::object span_text_, no_boxes_, no_points_, parsed_;
  std::vector<py::str> fill_;
  std::unordered_map<std::string, py::object> cache_;  // key: kind, tail id, ids -> str or None
};

}  // namespace

void bind_id_decoder(py::module_& m) {
  py::class_<IdDecoder>(m, "IdDecoder",
                        "gi_sdk.decode_ids' native half: token ids -> the fields of a Parsed (see id_decoder.cpp).")
      .def(py::init<const py::handle&, std::int64_t, py::object, py::object, py::object, py::object, py::object>(),
           py::arg("classes"), py::arg("loc_begin"), py::arg("span_text"), py::arg("no_boxes"), py::arg("no_points"),
           py::arg("parsed"), py::arg("fill"))
      .def("decode", &IdDecoder::decode, py::arg("ids"), py::arg("grammar"), py::arg("image_size"), py::arg("banned"),
           "parsed(text, boxes, box_labels, polygons, polygon_labels, points, point_labels), or None when the ids "
           "hold an ordinary token with a '<' (parse the decoded text instead).");
}

}  // namespace gi

// Token ids -> Florence-2 instances (boxes, polygons, points) and the spans of label text,
// following transformers' post-processing rules restated on tokens (sdk/token_decoder.py
// explains the restatement; decode_tokens_python there is the twin of this code).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace gi {

// Token classes, as gi_sdk.token_decoder.TokenVocab assigns them.
enum TokenClass : std::uint8_t {
  kText = 0, kLoc = 1, kSep = 2, kPoly = 3, kPolyEnd = 4, kDrop = 5, kTag = 6, kTagHidden = 7, kHazard = 8
};

// transformers' parse types (gi_sdk.token_decoder.GRAMMAR_CODES).
enum Grammar {
  kPureText = 0, kBoxes = 1, kRegionBoxes = 2, kGrounding = 3, kPolygons = 4, kBarePolygons = 5,
  kBoxesOrPolygons = 6, kPoints = 7
};

struct Decoded {
  bool exact = true;                        // false: an ordinary token holds a '<'
  std::vector<std::int32_t> events;         // text events: (start, end) id indices
  std::vector<std::int32_t> labels;         // labels: (start, end, tail index or -1)
  std::vector<std::int32_t> box_bins;       // 4 per box
  std::vector<std::int32_t> box_label;      // label index per box, -1: ""
  std::vector<std::int32_t> ring_bins;      // x, y pairs of all rings
  std::vector<std::int32_t> rings{0};       // ring r: points [rings[r], rings[r + 1])
  std::vector<std::int32_t> instances{0};   // instance i: rings [instances[i], instances[i + 1])
  std::vector<std::int32_t> instance_label;
  std::vector<std::int32_t> point_bins;     // x, y pairs
  std::vector<std::int32_t> point_event;    // text event labelling each point, -1: ""
  // Distinct texts to decode: (start, end, tail or -1, 1 for a label / 0 for an event), the
  // events first; event_text / label_text index them. A model repeats its labels, so the
  // caller decodes each distinct one once.
  std::vector<std::int32_t> texts;
  std::vector<std::int32_t> event_text;
  std::vector<std::int32_t> label_text;

  // Empty again, keeping the memory of the vectors (for a decoder that is called often).
  void clear() {
    exact = true;
    for (auto* v : {&events, &labels, &box_bins, &box_label, &ring_bins, &rings, &instances, &instance_label,
                    &point_bins, &point_event, &texts, &event_text, &label_text})
      v->clear();
    rings.push_back(0);
    instances.push_back(0);
  }
};

// ids: n token ids (any values: unknown ones are dropped). classes: the class of ids
// 0 .. n_classes - 1. <loc_N> is id loc_begin + N.
template <typename Id>
void decode_tokens(const Id* ids, std::size_t n, const std::uint8_t* classes, std::size_t n_classes,
                   std::int64_t loc_begin, int grammar, Decoded& out);

}  // namespace gi

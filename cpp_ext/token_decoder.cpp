#include "token_decoder.h"

#include <algorithm>

namespace gi {

namespace {

constexpr std::int64_t kNumLocs = 1000;

struct Tok {
  std::int32_t pos;  // index in the ids
  std::uint8_t cls;
  std::int16_t bin;  // <loc_N>: N
};

inline bool texty(std::uint8_t c) { return c == kText || c == kHazard; }
inline bool poly_token(std::uint8_t c) { return c == kLoc || c == kSep || c == kPoly || c == kPolyEnd; }

// Where a labelled match of the run s[a, b) starts (see _segment in sdk/token_decoder.py).
struct Segment {
  bool ok;
  int text, tail, run;  // first text token, tail token (-1: none), first token of the run
};

class Parser {
 public:
  Parser(const std::vector<Tok>& s, Decoded& out) : s_(s), out_(out), n_(static_cast<int>(s.size())) {}

  void text_events(bool points) {
    int current = -1, label = -1;
    std::vector<std::int32_t> run;
    auto flush = [&] {
      for (std::size_t k = 0; k + 1 < run.size(); k += 2) {
        out_.point_bins.push_back(run[k]);
        out_.point_bins.push_back(run[k + 1]);
        out_.point_event.push_back(label);
      }
      run.clear();
    };
    for (const Tok& t : s_) {
      if (texty(t.cls) || t.cls == kTag) {
        if (current < 0) {
          if (points) flush();
          current = label = static_cast<int>(out_.events.size() / 2);
          out_.events.push_back(t.pos);
          out_.events.push_back(t.pos + 1);
        }
        out_.events[2 * current + 1] = t.pos + 1;
      } else if (t.cls != kTagHidden) {  // hidden tags vanish; structure ends the text
        current = -1;
        if (t.cls == kLoc) {
          if (points) run.push_back(t.bin);
        } else if (points) {
          flush();
        }
      }
    }
    if (points) flush();
  }

  void boxes(bool labelled) {
    int search_from = 0;
    for (int q = 0; q < n_;) {
      if (s_[q].cls != kLoc) {
        ++q;
        continue;
      }
      int a = q;
      while (q < n_ && s_[q].cls == kLoc) ++q;
      const int b = q;
      if (b - a < 4) continue;
      int label = -1;
      if (labelled) {
        const Segment seg = segment(a, b, search_from);
        if (!seg.ok) continue;
        search_from = b;
        a = seg.run;
        label = add_label(seg.text, seg.tail, s_[a].pos);
      }
      for (int g = 0; g < (b - a) / 4; ++g) {
        for (int k = 0; k < 4; ++k) out_.box_bins.push_back(s_[a + 4 * g + k].bin);
        out_.box_label.push_back(label);
      }
    }
  }

  void polygons(bool labelled) {
    int search_from = 0;
    for (int q = 0; q < n_;) {
      if (!poly_token(s_[q].cls)) {
        ++q;
        continue;
      }
      int a = q;
      while (q < n_ && poly_token(s_[q].cls)) ++q;
      const int b = q;
      if (b - a < 4) continue;
      Segment seg{false, 0, -1, a};
      if (labelled) {
        seg = segment(a, b, search_from);
        if (!seg.ok) continue;
        search_from = b;
        a = seg.run;
      }
      // the phrase ends at the first <loc> or <poly> (unlabelled runs skip a leading <loc>)
      const int lead = !labelled && s_[a].cls == kLoc ? a + 1 : a;
      int stop = -1;
      for (int k = lead; k < b && stop < 0; ++k)
        if (s_[k].cls == kLoc || s_[k].cls == kPoly) stop = k;
      if (stop < 0) continue;
      int label;
      if (labelled) {
        label = add_label(seg.text, seg.tail, s_[stop].pos);
      } else {
        label = static_cast<int>(out_.labels.size() / 3);
        out_.labels.insert(out_.labels.end(), {s_[lead].pos, s_[stop].pos, -1});
      }
      instances(a, b, label);
    }
  }

 private:
  Segment segment(int a, int b, int search_from) const {
    int t = a;
    while (t - 1 >= search_from && texty(s_[t - 1].cls)) --t;
    const int tail = t - 1 >= search_from ? t - 1 : -1;
    if (t < a || tail >= 0) return {true, t, tail, a};
    if (b - a - 1 >= 4) return {true, a + 1, a, a + 1};  // the run opens the text
    return {false, 0, -1, a};
  }

  int add_label(int text, int tail, std::int32_t end_pos) {
    out_.labels.insert(out_.labels.end(), {s_[text].pos, end_pos, tail >= 0 ? s_[tail].pos : -1});
    return static_cast<int>(out_.labels.size() / 3) - 1;
  }

  // Polygon bodies of the run s[a, b): between <poly> and the next </poly> when the run has
  // both, else the whole run; each body gives one instance of its rings.
  void instances(int a, int b, int label) {
    bool has_poly = false, has_end = false;
    for (int k = a; k < b; ++k) {
      has_poly |= s_[k].cls == kPoly;
      has_end |= s_[k].cls == kPolyEnd;
    }
    if (!(has_poly && has_end)) {
      body(a, b, label);
      return;
    }
    for (int q = a;;) {
      int p = q;
      while (p < b && s_[p].cls != kPoly) ++p;
      if (p >= b) return;
      int e = p + 1;
      while (e < b && s_[e].cls != kPolyEnd) ++e;
      if (e >= b) return;
      body(p + 1, e, label);
      q = e + 1;
    }
  }

  // Rings: location runs that end at <sep> or at the end of the body; odd last bin dropped.
  void body(int start, int end, int label) {
    int count = 0;
    for (int q = start; q < end;) {
      if (s_[q].cls != kLoc) {
        ++q;
        continue;
      }
      const int u = q;
      while (q < end && s_[q].cls == kLoc) ++q;
      if (q == end || s_[q].cls == kSep) {
        const int pairs = (q - u) / 2;
        for (int k = 0; k < 2 * pairs; ++k) out_.ring_bins.push_back(s_[u + k].bin);
        out_.rings.push_back(out_.rings.back() + pairs);
        ++count;
      }
    }
    if (count > 0) {
      out_.instances.push_back(out_.instances.back() + count);
      out_.instance_label.push_back(label);
    }
  }

  const std::vector<Tok>& s_;
  Decoded& out_;
  const int n_;
};

// Spans with the same ids (and tail token) have the same text: one entry each in out.texts.
template <typename Id>
void dedupe_texts(const Id* ids, Decoded& out) {
  constexpr std::size_t kMaxDistinct = 256;  // past this, spans are listed without a search
  auto tail_id = [&](std::int32_t t) { return t >= 0 ? static_cast<std::int64_t>(ids[t]) : std::int64_t(-1); };
  auto add = [&](std::int32_t s, std::int32_t e, std::int32_t tail, std::int32_t label) {
    const std::size_t count = out.texts.size() / 4;
    for (std::size_t u = 0; u < count && count <= kMaxDistinct; ++u) {
      const std::int32_t* t = &out.texts[4 * u];
      if (t[3] == label && t[1] - t[0] == e - s && tail_id(t[2]) == tail_id(tail) &&
          std::equal(ids + s, ids + e, ids + t[0]))
        return static_cast<std::int32_t>(u);
    }
    out.texts.insert(out.texts.end(), {s, e, tail, label});
    return static_cast<std::int32_t>(count);
  };
  for (std::size_t k = 0; k < out.events.size(); k += 2)
    out.event_text.push_back(add(out.events[k], out.events[k + 1], -1, 0));
  for (std::size_t k = 0; k < out.labels.size(); k += 3)
    out.label_text.push_back(add(out.labels[k], out.labels[k + 1], out.labels[k + 2], 1));
}

}  // namespace

template <typename Id>
void decode_tokens(const Id* ids, std::size_t n, const std::uint8_t* classes, std::size_t n_classes,
                   std::int64_t loc_begin, int grammar, Decoded& out) {
  std::vector<Tok> stream;
  stream.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::int64_t i = static_cast<std::int64_t>(ids[k]);
    Tok t{static_cast<std::int32_t>(k), kLoc, 0};
    if (i >= loc_begin && i < loc_begin + kNumLocs) {
      t.bin = static_cast<std::int16_t>(i - loc_begin);
    } else if (i >= 0 && static_cast<std::uint64_t>(i) < n_classes && classes[i] != kDrop) {
      t.cls = classes[i];
    } else {
      continue;  // dropped, or an id the tokenizer does not know: absent from the text
    }
    out.exact &= t.cls != kHazard;
    stream.push_back(t);
  }
  Parser p(stream, out);
  p.text_events(grammar == kPoints);
  bool has_poly = false;
  for (const Tok& t : stream) has_poly |= t.cls == kPoly;
  if (grammar == kBoxes || grammar == kGrounding || (grammar == kBoxesOrPolygons && !has_poly))
    p.boxes(true);
  else if (grammar == kRegionBoxes)
    p.boxes(false);
  else if (grammar == kPolygons || grammar == kBoxesOrPolygons)
    p.polygons(true);
  else if (grammar == kBarePolygons)
    p.polygons(false);
  dedupe_texts(ids, out);
}

template void decode_tokens<std::int32_t>(const std::int32_t*, std::size_t, const std::uint8_t*, std::size_t,
                                          std::int64_t, int, Decoded&);
template void decode_tokens<std::int64_t>(const std::int64_t*, std::size_t, const std::uint8_t*, std::size_t,
                                          std::int64_t, int, Decoded&);

}  // namespace gi

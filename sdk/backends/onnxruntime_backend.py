"""The ONNX Runtime backend: runs a model bundle's four ONNX parts (``gi_sdk.bundle``).

    encode_image   vision_encoder.onnx                     pixels -> image features
    encode_prompt  embed_tokens.onnx + encoder_model.onnx  prompt ids + image features -> encoder state
    decode_step    embed_tokens.onnx + decoder_model_merged.onnx, one token with the KV cache

(A plain fp32 ``embed_tokens.onnx`` is read once into a numpy table and looked up there:
``gi_sdk.backends.embedding_table``.)

The decoder's first step (``use_cache_branch`` false) computes the cross-attention keys and
values from the encoder state; the backend keeps those arrays and passes the same ones to
every later step, which reads them instead of the encoder state. Only the self-attention
cache grows.

Providers: CPU always; ``device="cuda"`` (or ``"cuda:N"``) uses the CUDA provider and
``device="tensorrt"`` the TensorRT provider (then CUDA, then CPU), when the installed
onnxruntime has them (``pip install "gi-sdk[gpu]"``).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from ..bundle import PARTS
from ..errors import BackendUnavailableError, BundleError, ModelLoadError, require
from .embedding_table import embedding_table

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(bool)": np.bool_}


@dataclass
class EncoderState:
    """Text-encoder output for one prompt on one frame."""

    hidden: np.ndarray          # (B, L, D)
    attention_mask: np.ndarray  # (B, L) int64
    on_device: tuple | None = None  # (``hidden`` as an onnxruntime value where the decoder runs, its source)


@dataclass
class DecoderCache:
    """The decoder's KV cache between steps: per layer (key, value) arrays."""

    self_attention: list        # grows by one position per step
    cross_attention: list       # computed at the first step, then passed unchanged
    # (key, value) pairs of onnxruntime OrtValues (``.numpy()`` reads one on the host)


def _providers(ort, device: str) -> list:
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "tensorrt" or device.startswith("cuda"):
        wanted = "TensorrtExecutionProvider" if device == "tensorrt" else "CUDAExecutionProvider"
        if wanted not in available:
            raise BackendUnavailableError(
                f"device {device!r} needs onnxruntime's {wanted}, which this onnxruntime lacks (it has "
                f"{', '.join(available)}); install the GPU build with: pip install \"gi-sdk[gpu]\""
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        chain = [(wanted, {"device_id": index})]
        if wanted != "CUDAExecutionProvider" and "CUDAExecutionProvider" in available:
            chain.append(("CUDAExecutionProvider", {"device_id": index}))
        return chain + ["CPUExecutionProvider"]
    raise BackendUnavailableError(f"unknown device {device!r} for the onnxruntime backend; use 'cpu', "
                                  "'cuda', 'cuda:N' or 'tensorrt'")


#: Intra-op threads per part when the caller gives none: a device that shares its cores with
#: the video pipeline (or a busy test machine) sets it; unset, ONNX Runtime uses every core.
THREADS_ENV = "GI_SDK_ORT_THREADS"


class OnnxRuntimeBackend:
    """A model bundle on ONNX Runtime.

    threads: intra-op threads per part (None: ``$GI_SDK_ORT_THREADS``, else ONNX Runtime's
        default, one per core).
    """

    name = "onnxruntime"

    def __init__(self, checkpoint, device: str = "cpu", threads: int | None = None):
        ort = require("onnxruntime", "onnxruntime")
        threads = threads or int(os.environ.get(THREADS_ENV) or 0) or None
        bundle = getattr(checkpoint, "bundle", None)
        if bundle is None:
            raise ModelLoadError(f"{checkpoint.path} is a checkpoint, not a model bundle; the onnxruntime "
                                 "backend runs bundles (gi-sdk export CHECKPOINT --out BUNDLE), or use backend 'torch'")
        self.checkpoint = checkpoint
        self._ort, self._threads, self._providers = ort, threads, _providers(ort, device)
        self.threads = threads   # the Session resizes frames on as many (None: one per core)
        # where the KV cache lives between decoder steps (IO binding): the GPU of a CUDA or
        # TensorRT provider, else host memory
        gpu = self._providers[0][1]["device_id"] if isinstance(self._providers[0], tuple) else None
        self._kv_device = ("cuda", gpu) if gpu is not None else ("cpu", 0)
        # a plain fp32 token embedding is looked up in numpy (``embedding_table``: bit-identical,
        # without an onnxruntime run per token); any other runs as its own session
        self._embedding = embedding_table(bundle.part_path("embed_tokens"))
        # One frame at a time is the common case: the vision encoder is loaded with its batch
        # axis (named "batch_size" by gi-sdk export) fixed to 1, so that onnxruntime folds away
        # its shape arithmetic (built-in model: 1119 -> 509 nodes, 14.1 -> 13.5 ms); a batch of
        # frames gets the graph as exported, loaded on first use.
        self.sessions = {part: self._load(part, fixed={"batch_size": 1} if part == "vision_encoder" else None)
                         for part in PARTS if part != "decoder_model_merged"
                         and not (part == "embed_tokens" and self._embedding is not None)}
        self._vision_batch = None
        self._vision_lock = threading.Lock()
        self._later = self._load_later_step()
        decoder = self.sessions["decoder_model_merged"]
        self._types = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in decoder.get_inputs()}
        self._past = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self._present = [o.name for o in decoder.get_outputs() if o.name.startswith("present.")]
        self._image_token_id = checkpoint.image_token_id
        # several prompts decode as one batch when the exported graphs have a dynamic batch
        # axis (gi-sdk export writes "batch_size"); a fixed batch of 1 runs them one by one
        # (an embedding table takes any batch)
        inputs = [(part, name) for part, name in (("embed_tokens", "input_ids"), ("encoder_model", "inputs_embeds"),
                                                  ("decoder_model_merged", "inputs_embeds")) if part in self.sessions]
        batch_axes = [i.shape[0] for part, name in inputs for i in self.sessions[part].get_inputs() if i.name == name]
        self.decodes_batches = len(batch_axes) == len(inputs) and not any(isinstance(a, int) for a in batch_axes)

    def _load_later_step(self):
        """The decoder's later-step branch as its own session (``decoder_steps``), sharing the
        merged session's weights; None where it is not made (no ``onnx`` package; a GPU
        provider), and then every step runs the merged graph."""
        from .decoder_steps import later_step_graph

        path = self.checkpoint.bundle.part_path("decoder_model_merged")
        # CPU only for now: weights handed in through add_initializer with the CUDA or TensorRT
        # provider have never run here (no GPU), so a GPU keeps the merged graph it was tested with
        lifted = later_step_graph(path) if self._kv_device[0] == "cpu" else None
        if lifted is None:
            self.sessions["decoder_model_merged"] = self._load("decoder_model_merged")
            return None
        model, weights = lifted
        # one copy of each weight for both sessions: onnxruntime reads these arrays' memory
        self._shared_weights = {name: self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
                                for name, value in weights.items()}
        self.sessions["decoder_model_merged"] = self._load("decoder_model_merged", shared=self._shared_weights)
        session = self._load("decoder_model_merged", shared=self._shared_weights, model=model.SerializeToString())
        return session, {i.name for i in session.get_inputs()}, [o.name for o in session.get_outputs()
                                                                   if o.name.startswith("present.")]

    def _load(self, part: str, fixed: dict | None = None, shared: dict | None = None, model: bytes | None = None):
        """An onnxruntime session of one part (``model``: this graph instead of the part's
        file); ``fixed`` pins named axes to sizes; ``shared`` supplies initializers by name."""
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # fp16 parts on CPU log a warning per inserted cast
        if self._threads:
            options.intra_op_num_threads = self._threads
        # Threads spin between the operators of a run and stop when it ends: each part is its
        # own session with its own thread pool, and a pool that goes on spinning after its run
        # (onnxruntime's default) takes the cores from the next part's (the vision encoder after
        # the previous frame's decoder steps ran at half speed: 122 vs 75 ms on the tiny model,
        # 2 cores), while no spinning at all wakes the threads for every operator (built-in
        # model, 2 cores: vision encoder 15.9 ms without spinning, 14.3 ms with
        # force_spinning_stop; whole ask 26.9 -> 24.9 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        for name, size in (fixed or {}).items():
            options.add_free_dimension_override_by_name(name, size)
        for name, value in (shared or {}).items():
            options.add_initializer(name, value)
        path = self.checkpoint.bundle.part_path(part)
        state = self._ort.capi.onnxruntime_pybind11_state  # onnxruntime's own exception types
        load_errors = (state.Fail, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile,
                       state.NotImplemented, state.RuntimeException)
        try:
            return self._ort.InferenceSession(model if model is not None else str(path), options,
                                              providers=self._providers)
        except load_errors as exc:
            raise BundleError(f"{path}: onnxruntime cannot load part {part!r} ({exc}); re-export the bundle") from exc

    # ------------------------------------------------------------------ the three steps
    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> projected image features (B, image_seq_length, D)."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        session = self.sessions["vision_encoder"]
        if pixels.shape[0] != 1:
            with self._vision_lock:
                if self._vision_batch is None:
                    self._vision_batch = self._load("vision_encoder")
            session = self._vision_batch
        return session.run(None, {"pixel_values": pixels})[0]

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Token ids (B, S) -> input embeddings (B, S, D)."""
        if self._embedding is not None:
            return self._embedding[np.asarray(ids, np.int64)]
        return self.sessions["embed_tokens"].run(None, {"input_ids": np.ascontiguousarray(ids, dtype=np.int64)})[0]

    def encode_prompt(self, features: np.ndarray, prompt_ids: np.ndarray,
                      attention_mask: np.ndarray | None = None) -> EncoderState:
        """Image features + prompt ids (B, L), image placeholders included -> encoder state.

        Features of one image serve every row; attention_mask (B, L) marks the real tokens of
        right-padded prompts (None: all real).
        """
        ids = np.ascontiguousarray(prompt_ids, dtype=np.int64)
        embeds = self.embed(ids)
        placeholder = ids == self._image_token_id
        features = np.asarray(features, embeds.dtype)
        if features.shape[0] != ids.shape[0]:
            features = np.broadcast_to(features, (ids.shape[0], *features.shape[1:]))
        # the placeholders take the features in order, as transformers' masked_scatter does
        embeds[placeholder] = features.reshape(-1, embeds.shape[-1])[: placeholder.sum()]
        mask = (np.ones(ids.shape, np.int64) if attention_mask is None
                else np.ascontiguousarray(attention_mask, dtype=np.int64))
        hidden = self.sessions["encoder_model"].run(None, {"inputs_embeds": embeds, "attention_mask": mask})[0]
        return EncoderState(hidden=hidden, attention_mask=mask)

    def decode_step(self, state: EncoderState, tokens: np.ndarray, cache: DecoderCache | None = None):
        """One decoder step: tokens (B,) -> next-token logits (B, V) float32 and the new cache.

        IO binding: the cache's keys and values are onnxruntime values that stay where the
        decoder runs (GPU memory with the CUDA or TensorRT provider, host memory on CPU) from
        one step to the next, as does the encoder state; only the logits come back to the host.
        """
        if cache is not None and self._later is not None:   # the later-step branch alone
            session, reads, present = self._later
        else:
            session, reads, present = self.sessions["decoder_model_merged"], None, self._present
        binding = session.io_binding()
        batch = state.hidden.shape[0]
        embeds = self.embed(np.asarray(tokens, np.int64).reshape(-1, 1)).astype(self._types["inputs_embeds"], copy=False)
        binding.bind_cpu_input("inputs_embeds", np.ascontiguousarray(embeds))
        if reads is None or "encoder_attention_mask" in reads:
            binding.bind_cpu_input("encoder_attention_mask", state.attention_mask)
        if reads is None or "encoder_hidden_states" in reads:
            binding.bind_ortvalue_input("encoder_hidden_states", self._on_device(state))
        if reads is None:
            binding.bind_cpu_input("use_cache_branch", np.array([cache is not None]))
        if cache is None:  # not read by the first-step branch: empty arrays of the right rank
            for value in self._past:
                binding.bind_cpu_input(value.name, np.zeros((batch, value.shape[1], 0, value.shape[3]),
                                                            self._types[value.name]))
        else:
            for i, (own, cross) in enumerate(zip(cache.self_attention, cache.cross_attention)):
                for kind, (key, value) in (("decoder", own), ("encoder", cross)):
                    binding.bind_ortvalue_input(f"past_key_values.{i}.{kind}.key", key)
                    binding.bind_ortvalue_input(f"past_key_values.{i}.{kind}.value", value)
        binding.bind_output("logits", "cpu")
        for name in present:
            binding.bind_output(name, *self._kv_device)
        session.run_with_iobinding(binding)
        logits, *values = binding.get_outputs()
        out = dict(zip(present, values))
        layers = range(len(self._present) // 4)
        own = [(out[f"present.{i}.decoder.key"], out[f"present.{i}.decoder.value"]) for i in layers]
        cross = cache.cross_attention if cache is not None else [
            (out[f"present.{i}.encoder.key"], out[f"present.{i}.encoder.value"]) for i in layers]
        return logits.numpy()[:, -1].astype(np.float32), DecoderCache(self_attention=own, cross_attention=cross)

    def _on_device(self, state: EncoderState):
        """The encoder state as an onnxruntime value where the decoder runs, made once per state."""
        if state.on_device is None:
            hidden = np.ascontiguousarray(state.hidden, dtype=self._types["encoder_hidden_states"])
            # on the host the value reads the array's memory: the pair keeps the array alive
            state.on_device = (self._ort.OrtValue.ortvalue_from_numpy(hidden, *self._kv_device), hidden)
        return state.on_device[0]

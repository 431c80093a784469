"""Reading a model folder's description without loading any weights.

``Checkpoint.open(path)`` reads a merged Hugging Face checkpoint folder (config.json,
tokenizer.json, preprocessor_config.json, processor_config.json) and says which model family
it is, what image size and normalization it wants, and where its special tokens are. Only
JSON is read here, so it is cheap and needs no torch: the backends load the weights.
Given a model bundle (a folder with manifest.json) it checks the bundle (``gi_sdk.bundle``)
and describes it from the manifest; ``checkpoint.bundle`` is then set.

Family-specific facts live in the ``FAMILIES`` table, keyed by family name, so a new family
is a new row, not a new if-branch. Florence-2 answers in location tokens; the decoder-only
VLM families (LLaVA, Idefics3 / SmolVLM, Qwen2-VL / Qwen2.5-VL) answer in JSON
(``answers="json"``: ``gi_sdk.json_tasks``) and are run through transformers' own processor
and ``generate`` (``gi_sdk.backends.torch_vlm``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import Bundle, is_bundle
from .errors import BundleError, ModelLoadError
from .preprocessing import FLORENCE_MEAN, FLORENCE_STD


@dataclass(frozen=True)
class Family:
    """What differs between model families."""

    name: str
    model_types: tuple          # config.json "model_type" values that belong to the family
    image_token: str            # placeholder token the image features replace
    weights: tuple              # weight files, any of which makes a folder loadable
    default_image_size: int
    default_image_seq_length: int
    answers: str = "location_tokens"  # or "json": a decoder-only VLM answering in JSON
    end_of_turn: str | None = None    # the token that closes the model's turn (JSON families)


FAMILIES = {
    "florence2": Family(
        name="florence2",
        model_types=("florence2",),
        image_token="<image>",
        weights=("model.safetensors", "model.safetensors.index.json"),
        default_image_size=768,
        default_image_seq_length=577,
    ),
    # Decoder-only VLMs: the image size and sequence length below are informational (their
    # transformers processor prepares the image); end_of_turn is what their chat template
    # closes an assistant turn with, so generation stops there and training teaches it.
    "llava": Family(
        name="llava", model_types=("llava",), image_token="<image>",
        weights=("model.safetensors", "model.safetensors.index.json"),
        default_image_size=336, default_image_seq_length=576, answers="json", end_of_turn="</s>",
    ),
    "idefics3": Family(  # SmolVLM is Idefics3's architecture with its own model_type
        name="idefics3", model_types=("idefics3", "smolvlm"), image_token="<image>",
        weights=("model.safetensors", "model.safetensors.index.json"),
        default_image_size=364, default_image_seq_length=169, answers="json", end_of_turn="<end_of_utterance>",
    ),
    "qwen2_5_vl": Family(  # its processor needs torchvision (transformers' Qwen2-VL video processor)
        name="qwen2_5_vl", model_types=("qwen2_5_vl", "qwen2_vl"), image_token="<|image_pad|>",
        weights=("model.safetensors", "model.safetensors.index.json"),
        default_image_size=448, default_image_seq_length=256, answers="json", end_of_turn="<|im_end|>",
    ),
}


def _token_id(value, default: int) -> int:
    """A special-token id from a config: an int, the first of a list, or ``default`` when absent."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return default if value is None else int(value)


def _side(size: dict, default: int) -> tuple:
    """(width, height) from an image processor's ``size`` ({height, width}, longest_edge, ...)."""
    if "width" in size and "height" in size:
        return int(size["width"]), int(size["height"])
    side = size.get("longest_edge") or size.get("shortest_edge") or default
    return int(side), int(side)


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read {what} ({exc})") from exc


@dataclass(frozen=True)
class Checkpoint:
    """A merged checkpoint folder, described from its JSON files.

    >>> ckpt = Checkpoint.open("path/to/checkpoint")
    >>> ckpt.family.name, ckpt.image_size, ckpt.image_token_id
    ('florence2', (768, 768), 51289)
    """

    path: Path
    family: Family
    config: dict
    image_size: tuple           # (width, height)
    image_mean: tuple
    image_std: tuple
    image_seq_length: int
    image_token_id: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    decoder_start_token_id: int
    banned_grounding_phrases: tuple = field(default=("the image",))
    generation_config: dict = field(default_factory=dict)   # generation_config.json / manifest
    labels: tuple = ()          # class names its detect / count / point labels use (empty: any words)
    track_start_score: float | None = None  # a bundle's tracker start score (manifest "tracking")
    bundle: object = None       # gi_sdk.bundle.Bundle when the folder is a model bundle

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def max_encoder_tokens(self) -> int:
        """Longest text-encoder input (image placeholders + prompt) the model has positions for."""
        return int((self.config.get("text_config") or {}).get("max_position_embeddings", 1024))

    def encoder_input_ids(self, tokenizer, prompt: str) -> list[int]:
        """Text-encoder input ids for ``prompt``, laid out as transformers' Florence2Processor
        lays them out: image placeholders (one per image feature), ``<s>``, prompt, ``</s>``.

        Training and runtime both call this, so a model sees at run time the layout it was
        trained on. ``tokenizer`` is a ``tokenizers.Tokenizer``.
        """
        body = tokenizer.encode(prompt, add_special_tokens=False).ids
        return ([self.image_token_id] * self.image_seq_length + [self.bos_token_id] + body
                + [self.eos_token_id])

    @classmethod
    def open(cls, path) -> "Checkpoint":
        """Describe the checkpoint at ``path``; raise ModelLoadError if it is not one."""
        root = Path(path).expanduser()
        if is_bundle(root):
            return cls.from_bundle(Bundle.open(root))
        expected = ("expected a merged Florence-2 (or decoder-only VLM) checkpoint folder with config.json "
                    f"(model_type {', '.join(sorted(t for f in FAMILIES.values() for t in f.model_types))}), "
                    "model.safetensors and tokenizer.json, or a model bundle folder with manifest.json")
        if not root.exists():
            raise ModelLoadError(f"model path {root} does not exist; {expected}")
        if not root.is_dir():
            raise ModelLoadError(f"model path {root} is a file, not a folder; {expected}")
        config = _read_json(root / "config.json", "config.json")
        if not config:
            raise ModelLoadError(f"{root} has no config.json; {expected}")
        model_type = config.get("model_type")
        family = next((f for f in FAMILIES.values() if model_type in f.model_types), None)
        if family is None:
            known = ", ".join(sorted(t for f in FAMILIES.values() for t in f.model_types))
            raise ModelLoadError(
                f"{root}: config.json has model_type {model_type!r}; gi_sdk serves {known}. {expected}"
            )
        missing = [name for name in ("tokenizer.json",) if not (root / name).is_file()]
        if not any((root / w).is_file() for w in family.weights):
            missing.append(" or ".join(family.weights))
        if missing:
            raise ModelLoadError(f"{root} is missing {', '.join(missing)}; {expected}")

        pre = _read_json(root / "preprocessor_config.json", "preprocessor_config.json")
        proc = _read_json(root / "processor_config.json", "processor_config.json")
        pre = pre or proc.get("image_processor") or {}  # processors that keep it in processor_config.json
        text = config.get("text_config") or {}
        banned = (proc.get("post_processor_config") or {}).get("phrase_grounding", {}).get(
            "banned_grounding_tokens", ["the image"])
        return cls(
            path=root,
            family=family,
            config=config,
            image_size=_side(pre.get("size") or {}, family.default_image_size),
            image_mean=tuple(pre.get("image_mean", FLORENCE_MEAN)),
            image_std=tuple(pre.get("image_std", FLORENCE_STD)),
            image_seq_length=int(pre.get("image_seq_length", family.default_image_seq_length)),
            image_token_id=_token_id(config.get("image_token_id", config.get("image_token_index")), -1),
            bos_token_id=_token_id(text.get("bos_token_id"), 0),
            eos_token_id=_token_id(text.get("eos_token_id"), 2),
            pad_token_id=_token_id(text.get("pad_token_id"), 1),
            decoder_start_token_id=_token_id(text.get("decoder_start_token_id"), 2),
            banned_grounding_phrases=tuple(banned),
            generation_config=_read_json(root / "generation_config.json", "generation_config.json"),
            labels=tuple(_read_json(root / "training_record.json", "training_record.json").get("labels") or ()),
        )

    @classmethod
    def from_bundle(cls, bundle) -> "Checkpoint":
        """Describe a checked ``gi_sdk.bundle.Bundle`` from its manifest."""
        m = bundle.manifest
        family = FAMILIES.get(m.get("family"))
        if family is None:
            raise BundleError(f"{bundle.path}: manifest family {m.get('family')!r}; gi_sdk serves "
                              f"{', '.join(sorted(FAMILIES))}")
        pre, tok = m.get("preprocessing") or {}, m.get("tokenizer") or {}
        try:
            return cls(
                path=bundle.path, family=family, config=m.get("model") or {},
                image_size=tuple(int(v) for v in pre["image_size"]),
                image_mean=tuple(pre["image_mean"]), image_std=tuple(pre["image_std"]),
                image_seq_length=int(tok["image_seq_length"]), image_token_id=int(tok["image_token_id"]),
                bos_token_id=int(tok["bos_token_id"]), eos_token_id=int(tok["eos_token_id"]),
                pad_token_id=int(tok["pad_token_id"]), decoder_start_token_id=int(tok["decoder_start_token_id"]),
                banned_grounding_phrases=tuple(m.get("banned_grounding_phrases", ("the image",))),
                generation_config=dict(m.get("generation") or {}), labels=tuple(m.get("labels") or ()),
                track_start_score=_start_score(bundle, m), bundle=bundle,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{bundle.path / 'manifest.json'}: preprocessing or tokenizer entry missing or "
                              f"malformed ({exc!r}); re-export the bundle") from exc


def _start_score(bundle, manifest: dict) -> float | None:
    """The manifest's tracker start score ("tracking": {"start_score": s}), None when absent."""
    score = (manifest.get("tracking") or {}).get("start_score")
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise BundleError(f"{bundle.path / 'manifest.json'}: tracking start_score {score!r} is not a score "
                          "in [0, 1]; re-export the bundle")
    return float(score)

"""Tiny decoder-only VLM checkpoints (LLaVA, Idefics3, Qwen2.5-VL) for tests, built from configs.

Nothing is downloaded: the tokenizer is trained here with the ``tokenizers`` library
(``gi_sdk.train.tiny.train_byte_bpe``, on the built-in corpus plus the JSON prompts and
answers of ``gi_sdk.json_tasks``) and carries the family's special tokens; the model is the
native ``transformers`` class with random weights; the processor (image processor,
tokenizer, chat template) is the family's own transformers class, saved beside it. So
loading takes exactly the code path a real checkpoint takes: ``AutoProcessor`` +
``AutoModelForImageTextToText``, ``gi_sdk.Session``, ``gi_sdk.train.run``.

    python -m gi_sdk.train.tiny_vlm --family llava --out .cache/models/tiny-llava

Images are tiny (32 px, 4-16 image tokens) so a training step costs milliseconds on a CPU.
Qwen2.5-VL's processor needs ``torchvision`` (transformers builds its video processor with it):
``build_tiny_vlm(..., "qwen2_5_vl")`` raises MissingDependencyError without it.
"""
from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from gi_sdk.errors import MissingDependencyError, require
from gi_sdk.json_tasks import JSON_TASKS, json_answer, json_prompt

from .tiny import train_byte_bpe

#: Pixels per side of the tiny models' images.
TINY_IMAGE = 32

# The chat templates, in the shape of the public checkpoints' (one image + text per user turn).
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@dataclass(frozen=True)
class TinyFamily:
    """What a tiny checkpoint of one family needs: its special tokens (first in the
    vocabulary), which of them are bos / eos / pad / unk, and its chat template."""

    specials: tuple
    bos: str
    eos: str
    pad: str
    unk: str | None
    chat_template: str


TINY_FAMILIES = {
    "llava": TinyFamily(("<unk>", "<s>", "</s>", "<pad>", "<image>"), "<s>", "</s>", "<pad>", "<unk>",
                        LLAVA_TEMPLATE),
    "idefics3": TinyFamily(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>",
                            "<fake_token_around_image>", "<global-img>",
                            *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))),
                           "<|im_start|>", "<end_of_utterance>", "<|endoftext|>", None, IDEFICS3_TEMPLATE),
    "qwen2_5_vl": TinyFamily(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"),
                             "<|endoftext|>", "<|im_end|>", "<|endoftext|>", None, QWEN_TEMPLATE),
}

#: The decoder of every tiny model (a 2-layer Llama / Qwen2 of width 64).
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=2048)


def _json_corpus() -> list[str]:
    """Prompts and answers of every JSON task, so the tiny BPE learns their pieces."""
    lines = []
    for task in JSON_TASKS:
        text = "polyp" if "{input}" in JSON_TASKS[task].question else None
        lines.append(json_prompt(task, text))
        lines.append(json_answer(task, points=[[106.5, 197.0], [12.0, 340.5]], boxes=[[10.0, 20.5, 300.0, 241.0]],
                                 labels=None, label="polyp"))
    return lines + ["0 1 2 3 4 5 6 7 8 9 10 25 50 64 75 100 128 200 250 300 400 480 500 640 .0 .5"]


def _tokenizer(family: TinyFamily, vocab_size: int):
    transformers = require("transformers", "train")
    tok = train_byte_bpe(family.specials, vocab_size, _json_corpus())
    named = {k: v for k, v in dict(bos_token=family.bos, eos_token=family.eos, pad_token=family.pad,
                                   unk_token=family.unk).items() if v is not None}
    return tok, transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _llava(t, tok, fast, family):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    ids = tok.token_to_id
    side = {"height": TINY_IMAGE, "width": TINY_IMAGE}
    # resized to a square without a crop: a crop would cut off instances near the edges
    images = CLIPImageProcessorPil(size=side, crop_size=side, do_center_crop=False)
    processor = t.LlavaProcessor(image_processor=images, tokenizer=fast, patch_size=8, num_additional_image_tokens=1,
                                 vision_feature_select_strategy="default", chat_template=family.chat_template)
    config = t.LlavaConfig(
        text_config=dict(model_type="llama", vocab_size=tok.get_vocab_size(), bos_token_id=ids(family.bos),
                         eos_token_id=ids(family.eos), pad_token_id=ids(family.pad), **_TEXT),
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=TINY_IMAGE, patch_size=8, projection_dim=32),
        image_token_id=ids("<image>"), vision_feature_select_strategy="default", vision_feature_layer=-1,
        tie_word_embeddings=False)
    return t.LlavaForConditionalGeneration(config), processor


def _idefics3(t, tok, fast, family):
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    ids = tok.token_to_id
    edge = {"longest_edge": TINY_IMAGE}
    images = Idefics3ImageProcessorPil(do_image_splitting=False, size=edge, max_image_size=edge)
    # (32 / 8)^2 patches, pixel-shuffled by scale_factor 2 -> 4 image tokens
    processor = t.Idefics3Processor(image_processor=images, tokenizer=fast, image_seq_len=4,
                                    chat_template=family.chat_template)
    config = t.Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=tok.get_vocab_size(), bos_token_id=ids(family.bos),
                         eos_token_id=ids(family.eos), pad_token_id=ids(family.pad), **_TEXT),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=TINY_IMAGE, patch_size=8),
        scale_factor=2, image_token_id=ids("<image>"), pad_token_id=ids(family.pad), tie_word_embeddings=False)
    return t.Idefics3ForConditionalGeneration(config), processor


def _qwen2_5_vl(t, tok, fast, family):
    if importlib.util.find_spec("torchvision") is None:
        raise MissingDependencyError("transformers' Qwen2.5-VL processor needs torchvision (its video processor "
                                     "is built with it): pip install torchvision (the build matching your torch)")
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ids = tok.token_to_id
    # 28 px patches after 2x2 merging; at most 56x56 px -> at most 4 image tokens
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                      temporal_patch_size=2)
    video = t.Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    processor = t.Qwen2_5_VLProcessor(image_processor=images, tokenizer=fast, video_processor=video,
                                      chat_template=family.chat_template)
    config = t.Qwen2_5_VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), bos_token_id=ids(family.bos), eos_token_id=ids(family.eos),
                         pad_token_id=ids(family.pad), **_TEXT,
                         # head_dim 16: the 3-D rotary sections (time, height, width) sum to 8
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False)
    return t.Qwen2_5_VLForConditionalGeneration(config), processor


_BUILDERS = {"llava": _llava, "idefics3": _idefics3, "qwen2_5_vl": _qwen2_5_vl}


def build_tiny_vlm(out_dir: str | Path, family: str = "llava", seed: int = 0, vocab_size: int = 1200) -> Path:
    """Build a random-weight decoder-only VLM checkpoint folder of ``family`` at ``out_dir``.

    The folder holds config.json, model.safetensors, generation_config.json, tokenizer.json,
    the processor files and chat_template.jinja; returns ``out_dir``.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {sorted(_BUILDERS)}")
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    spec = TINY_FAMILIES[family]
    tok, fast = _tokenizer(spec, vocab_size)
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family](transformers, tok, fast, spec)
    model = model.eval()
    end = tok.token_to_id(spec.eos)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tok.token_to_id(spec.bos), eos_token_id=end, pad_token_id=tok.token_to_id(spec.pad),
        do_sample=False, num_beams=1, max_new_tokens=256)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--family", choices=sorted(_BUILDERS), default="llava")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote tiny {args.family} checkpoint to {build_tiny_vlm(args.out, args.family, args.seed)}")


if __name__ == "__main__":
    main()

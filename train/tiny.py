"""Tiny Florence-2 checkpoints for tests, demos and benchmarks, built from a config.

Nothing is downloaded: the tokenizer is trained here with the ``tokenizers`` library on a
small built-in corpus, and carries Florence-2's special tokens, all 1000 location tokens,
the image token and gi_sdk's task tokens in the same order as the real one. The model is a
native ``transformers`` ``Florence2ForConditionalGeneration`` with random weights, saved as
an ordinary checkpoint folder, so loading it takes exactly the code path a real
checkpoint takes.

    python -m gi_sdk.train.tiny --out .cache/models/tiny-florence2

``shape="base"`` builds a model with the layer sizes of Florence-2-base (0.23B parameters,
random weights) for benchmarks.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gi_sdk.errors import require
from gi_sdk.tasks import NEW_TASK_TOKENS, TASKS

#: Florence-2 (BART) special tokens, in the ids the real tokenizer gives them.
BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
#: The tokens Florence-2 adds to BART's vocabulary, in its order (location tokens in between).
FLORENCE_TOKENS_BEFORE_LOC = ["<od>", "</od>", "<ocr>", "</ocr>"]
FLORENCE_TOKENS_AFTER_LOC = [
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
    "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
    "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
]
IMAGE_TOKEN = "<image>"

# Enough text that byte-level BPE learns whole words for the prompts and answers we use.
_CORPUS = [t.template.replace("{input}", "") for t in TASKS.values()] + [
    "Is there a polyp? Yes, there is one polyp in the upper-left of the image.",
    "How many polyps are there? There are two polyps, in the center and the lower-right.",
    "What colour is the polyp? The polyp is pink with a red surface.",
    "Is an instrument present? No instrument is visible in the image.",
    "Is there text in the image? Yes, there is text in the upper-left corner.",
    "What size is the polyp? The polyp is small, less than five millimetres.",
    "Describe the abnormality. A sessile polyp with a smooth surface and normal mucosa.",
    "polyp instrument forceps snare mucosa colon cecum ileum ulcerative colitis esophagitis",
    "The image shows a pedunculated polyp on a stalk near a fold of the colon wall.",
    "Explanation: the lesion is raised above the surrounding mucosa and has a red colour.",
    "upper lower left right center middle none one two three four five yes no",
]


def train_byte_bpe(special_tokens, vocab_size: int, extra_corpus=()):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on the built-in corpus (plus
    ``extra_corpus`` lines), ``special_tokens`` first in the vocabulary (ids 0, 1, ...).

    Shared by every tiny test checkpoint (``gi_sdk.train.tiny_vlm`` too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((_CORPUS + list(extra_corpus)) * 4, trainer=trainer)
    return tok


def build_tokenizer(out_dir: str | Path, vocab_size: int = 1200) -> Path:
    """Train a small byte-level BPE tokenizer with Florence-2's special tokens; save it.

    Writes ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` to
    ``out_dir`` (loadable by ``transformers.AutoTokenizer`` and by ``tokenizers.Tokenizer``).
    Returns ``out_dir``.
    """
    from tokenizers import processors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_byte_bpe(BART_SPECIALS, vocab_size)
    added = (
        ["<mask>"] + FLORENCE_TOKENS_BEFORE_LOC + [f"<loc_{i}>" for i in range(1000)]
        + FLORENCE_TOKENS_AFTER_LOC + [IMAGE_TOKEN] + list(NEW_TASK_TOKENS)
    )
    tok.add_special_tokens(added)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False)
    tok.save(str(out / "tokenizer.json"))
    write_tokenizer_config(out, [t for t in added if t not in ("<mask>", IMAGE_TOKEN)])
    return out


def write_tokenizer_config(out: Path, extra_special_tokens: list) -> None:
    """Write the ``tokenizer_config.json`` and ``special_tokens_map.json`` that let
    ``transformers.AutoTokenizer`` / ``AutoProcessor`` load ``out/tokenizer.json`` as
    Florence-2's tokenizer (``extra_special_tokens``: the added tokens but ``<mask>`` and the
    image token)."""
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                "sep_token": "</s>", "cls_token": "<s>", "mask_token": "<mask>"}
    config = {
        "tokenizer_class": "BartTokenizer",
        "model_max_length": 1024,
        "add_prefix_space": False,
        **specials,
        "additional_special_tokens": list(extra_special_tokens),
        "extra_special_tokens": {"image_token": IMAGE_TOKEN},
        "processor_class": "Florence2Processor",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(
        json.dumps({**specials, "additional_special_tokens": list(extra_special_tokens)}, indent=2))


def write_processor_files(out: Path, image_size, image_seq_length: int,
                          image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225),
                          banned_grounding_phrases=("the image",)) -> None:
    """Write the image-processor and processor configs a Florence-2 checkpoint carries
    (``image_size``: one side, or (width, height))."""
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "Florence2Processor",
        "do_resize": True,
        "size": {"height": height, "width": width},
        "resample": 3,  # bicubic, as Florence-2
        "do_center_crop": False,
        "crop_size": {"height": height, "width": width},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(image_mean),
        "image_std": list(image_std),
        "do_convert_rgb": True,
        "image_seq_length": image_seq_length,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor = {
        "processor_class": "Florence2Processor",
        "num_additional_image_tokens": 0,
        "post_processor_config": {
            "ocr": {"PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
                    "AREA_THRESHOLD": 0.0},
            "phrase_grounding": {"FILTER_BY_BLACK_LIST": True, "banned_grounding_tokens": list(banned_grounding_phrases)},
            "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {},
            "polygons": {}, "bboxes": {}, "description_with_bboxes_or_polygons": {},
        },
    }
    (out / "processor_config.json").write_text(json.dumps(processor, indent=2))


#: Model shapes: "tiny" for tests (a few MB), "demo" for the built-in model (4.6M parameters,
#: trained from scratch on synthetic scenes; ~60 ms per 256 px frame on one CPU core for the
#: vision tower), "base" with Florence-2-base's layer sizes.
SHAPES = {
    "tiny": dict(
        vision=dict(depths=[1, 1, 1, 1], embed_dim=[16, 32, 32, 64], num_heads=[1, 2, 2, 4],
                    num_groups=[1, 2, 2, 4], projection_dim=64, window_size=12),
        text=dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    ),
    "demo": dict(
        vision=dict(depths=[1, 1, 2, 1], embed_dim=[32, 64, 128, 192], num_heads=[1, 2, 4, 6],
                    num_groups=[1, 2, 4, 6], projection_dim=192, window_size=8),
        text=dict(d_model=192, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512),
    ),
    "base": dict(
        vision=dict(depths=[1, 1, 9, 1], embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                    num_groups=[4, 8, 16, 32], projection_dim=768, window_size=12),
        text=dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    ),
}


def build_tiny_florence2(out_dir: str | Path, shape: str = "tiny", seed: int = 0,
                         image_size: int = 768) -> Path:
    """Build a random-weight native Florence-2 checkpoint folder at ``out_dir``.

    The folder holds config.json, model.safetensors, generation_config.json, the tokenizer
    files and the processor configs: ``Florence2ForConditionalGeneration.from_pretrained``,
    ``AutoProcessor.from_pretrained`` and ``gi_sdk.Session`` all load it.
    """
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    out = Path(out_dir)
    build_tokenizer(out)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    sizes = SHAPES[shape]
    # The vision tower downsamples 32x; the projector adds one pooled token.
    image_seq_length = (image_size // 32) ** 2 + 1
    text_config = dict(
        vocab_size=vocab, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
        # tiny: large random weights so an untrained model still writes varied tokens in tests
        scale_embedding=False, init_std=0.2 if shape == "tiny" else 0.02, **sizes["text"],
    )
    config = transformers.Florence2Config(
        vision_config=dict(**sizes["vision"], max_position_embeddings=max(50, image_size // 32)),
        text_config=text_config,
        image_token_id=tok.token_to_id(IMAGE_TOKEN),
        # Untied for random weights only: a tied random decoder echoes its input token, so
        # it would emit EOS (= the start token) at once and every test would see empty output.
        tie_word_embeddings=shape != "tiny",
    )
    torch.manual_seed(seed)
    model = transformers.Florence2ForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        forced_eos_token_id=2, num_beams=1, do_sample=False, max_new_tokens=64,
        no_repeat_ngram_size=0,
    )
    model.save_pretrained(out)
    write_processor_files(out, image_size, image_seq_length)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=768, help="square input size (a multiple of 32)")
    args = parser.parse_args(argv)
    path = build_tiny_florence2(args.out, shape=args.shape, seed=args.seed, image_size=args.image_size)
    print(f"wrote {args.shape} Florence-2 checkpoint to {path}")


if __name__ == "__main__":
    main()

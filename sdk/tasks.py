"""The task registry: what each task asks the model and what shape its answer takes.

Training targets and runtime decoding both go through this table, so a model sees at run
time exactly the prompt it was trained on. Florence-2's own tasks keep the prompt
expansions of transformers' ``Florence2Processor`` (so checkpoints trained with the HF
processor behave the same here); the medical tasks of the seed work (``<MedVQA>``,
``<MedVQA_EXPLAIN>``) and the counting / pointing tasks are written as the task token
followed by the input, the way the seed paper prompts ``<MedVQA>``.

>>> from gi_sdk.tasks import get_task, build_prompt
>>> get_task("detect").token
'<OD>'
>>> build_prompt("segment", "polyp")
'Locate polyp in the image with mask'
>>> build_prompt("ask", "How many polyps are there?")
'<MedVQA> How many polyps are there?'
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import PromptError, UnknownTaskError

# Output kinds: how the generated text is parsed (gi_sdk.codec) and which Result fields fill.
TEXT = "text"                      # an answer or a caption
BOXES = "boxes"                    # label<loc><loc><loc><loc> ... (label may be empty)
PHRASE_BOXES = "phrase_boxes"      # phrase grounding: phrase followed by one or more boxes
POLYGONS = "polygons"              # label<poly><loc>...</poly><sep>...
BOXES_OR_POLYGONS = "boxes_or_polygons"
POINTS = "points"                  # label<loc_x><loc_y> ...
OUTPUT_KINDS = (TEXT, BOXES, PHRASE_BOXES, POLYGONS, BOXES_OR_POLYGONS, POINTS)

#: Separator between the answer and its explanation in ``<MedVQA_EXPLAIN>`` targets.
EXPLANATION_SEPARATOR = " Explanation: "

#: A longer question than this (in characters) is refused with PromptError: Florence-2's
#: text encoder has 1024 positions, 577 of which the image takes.
MAX_INPUT_CHARS = 1200


@dataclass(frozen=True)
class Task:
    """One task of the registry.

    name: the SDK's name for it (``Session`` methods use these).
    token: the Florence-2 task token that selects it.
    output: the output kind, one of ``OUTPUT_KINDS``.
    template: how the prompt is written; ``{input}`` is replaced by the user's text.
    needs_input: whether the task takes a question, phrase or region.
    max_new_tokens: default token budget for generation.
    hf_parse_type: the ``Florence2PostProcessor`` parse type that transformers uses for
        this task token (None for our own tasks, which transformers does not know).
    """

    name: str
    token: str
    output: str
    template: str
    needs_input: bool
    max_new_tokens: int
    hf_parse_type: str | None
    help: str


_TASKS = [
    # Florence-2's own tasks, prompt expansions as in transformers' Florence2Processor.
    Task("caption", "<CAPTION>", TEXT, "What does the image describe?", False, 64,
         "pure_text", "One-sentence caption."),
    Task("detailed_caption", "<DETAILED_CAPTION>", TEXT,
         "Describe in detail what is shown in the image.", False, 128, "pure_text",
         "Detailed caption."),
    Task("more_detailed_caption", "<MORE_DETAILED_CAPTION>", TEXT,
         "Describe with a paragraph what is shown in the image.", False, 256, "pure_text",
         "Paragraph caption."),
    Task("ocr", "<OCR>", TEXT, "What is the text in the image?", False, 128, "pure_text",
         "Text in the image."),
    Task("detect", "<OD>", BOXES, "Locate the objects with category name in the image.",
         False, 128, "description_with_bboxes", "Boxes with category labels."),
    Task("dense_region_caption", "<DENSE_REGION_CAPTION>", BOXES,
         "Locate the objects in the image, with their descriptions.", False, 128,
         "description_with_bboxes", "Boxes with a description each."),
    Task("region_proposal", "<REGION_PROPOSAL>", BOXES,
         "Locate the region proposals in the image.", False, 128, "bboxes",
         "Boxes without labels."),
    Task("ground", "<CAPTION_TO_PHRASE_GROUNDING>", PHRASE_BOXES,
         "Locate the phrases in the caption: {input}", True, 128, "phrase_grounding",
         "Boxes for the phrases of a caption."),
    Task("segment", "<REFERRING_EXPRESSION_SEGMENTATION>", POLYGONS,
         "Locate {input} in the image with mask", True, 512, "polygons",
         "Polygons of what a phrase refers to."),
    Task("region_to_segmentation", "<REGION_TO_SEGMENTATION>", POLYGONS,
         "What is the polygon mask of region {input}", True, 512, "polygons",
         "Polygon of a region given as <loc_x1><loc_y1><loc_x2><loc_y2>."),
    Task("open_vocabulary_detect", "<OPEN_VOCABULARY_DETECTION>", BOXES_OR_POLYGONS,
         "Locate {input} in the image.", True, 128, "description_with_bboxes_or_polygons",
         "Boxes (or polygons) of a named thing."),
    # The seed work's medical tasks and ours: token, then the input.
    Task("ask", "<MedVQA>", TEXT, "<MedVQA> {input}", True, 64, None,
         "Answer a question about the frame."),
    Task("explain", "<MedVQA_EXPLAIN>", TEXT, "<MedVQA_EXPLAIN> {input}", True, 160, None,
         "Answer, then explain it (answer + EXPLANATION_SEPARATOR + explanation)."),
    Task("count", "<MedCOUNT>", BOXES, "<MedCOUNT> {input}", True, 128, None,
         "Count instances of a class: one labelled box per instance."),
    Task("point", "<MedPOINT>", POINTS, "<MedPOINT> {input}", True, 96, None,
         "Point at instances of a class: one labelled point per instance."),
    # The upper-GI instruction seed's task kinds (CAP, describing the image, is "caption"):
    # CLS classify the site or finding (scored by accuracy), REC locate what an expression
    # refers to (a box, right when IoU >= 0.5), REG name the finding in a given region.
    Task("classify", "<MedCLS>", TEXT, "<MedCLS> {input}", True, 24, None,
         "CLS: classify the frame (site, finding) as the instruction asks: one class name."),
    Task("locate", "<MedREC>", BOXES, "<MedREC> {input}", True, 64, None,
         "REC: the box of what a referring expression names (label<loc x4>)."),
    Task("name_region", "<MedREG>", TEXT, "<MedREG> {input}", True, 24, None,
         "REG: name the finding in a region given as <loc_x1><loc_y1><loc_x2><loc_y2>."),
]

TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
_BY_TOKEN: dict[str, Task] = {t.token: t for t in _TASKS}

#: Tasks whose instance labels are the model's class names ("polyp", "instrument"), not free
#: text: a Session holds them to the model's label vocabulary (``gi_sdk.grammar``).
CLASS_NAME_TASKS = frozenset({"detect", "count", "point"})

#: Task tokens that are not in the original Florence-2 vocabulary: training adds them to the
#: tokenizer and learns their embeddings.
NEW_TASK_TOKENS = tuple(t.token for t in _TASKS if t.hf_parse_type is None)


def get_task(name_or_token: str) -> Task:
    """Look a task up by SDK name (``"detect"``) or Florence-2 token (``"<OD>"``)."""
    task = TASKS.get(name_or_token) or _BY_TOKEN.get(name_or_token)
    if task is None:
        known = ", ".join(sorted(TASKS))
        raise UnknownTaskError(f"unknown task {name_or_token!r}; known tasks: {known}")
    return task


def build_prompt(task: str | Task, text: str | None = None) -> str:
    """The prompt text the model is given for ``task`` with input ``text``.

    Raises PromptError when a task that needs an input gets none (or gets one it does not
    take), or when the input is too long.
    """
    t = task if isinstance(task, Task) else get_task(task)
    if not t.needs_input:
        if text:
            raise PromptError(f"task {t.name!r} takes no input text; got {text!r}")
        return t.template
    if text is None or not isinstance(text, str) or not text.strip():
        raise PromptError(f"task {t.name!r} needs an input text (a question or phrase); got {text!r}")
    if len(text) > MAX_INPUT_CHARS:
        raise PromptError(
            f"input for task {t.name!r} is {len(text)} characters; the limit is {MAX_INPUT_CHARS}. "
            "Shorten the question."
        )
    return t.template.format(input=text.strip())

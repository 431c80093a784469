"""The task registry: prompts match transformers' Florence2Processor, errors are clear."""
import pytest

from gi_sdk import tasks as T
from gi_sdk.errors import PromptError, UnknownTaskError


@pytest.mark.parametrize("task,text,expected", [
    # Florence-2's own prompts must be expanded exactly as the HF processor does
    ("detect", None, "Locate the objects with category name in the image."),
    ("segment", "polyp", "Locate polyp in the image with mask"),
    ("ground", "a red polyp", "Locate the phrases in the caption: a red polyp"),
    ("open_vocabulary_detect", "forceps", "Locate forceps in the image."),
    ("<REGION_TO_SEGMENTATION>", "<loc_1><loc_2><loc_3><loc_4>", "What is the polygon mask of region <loc_1><loc_2><loc_3><loc_4>"),
    # the seed paper's medical tokens are the token followed by the question
    ("ask", "  Is there a polyp? ", "<MedVQA> Is there a polyp?"),
    ("explain", "Why?", "<MedVQA_EXPLAIN> Why?"),
    ("count", "polyp", "<MedCOUNT> polyp"),
])
def test_build_prompt(task, text, expected):
    assert T.build_prompt(task, text) == expected


@pytest.mark.parametrize("task,text,error", [
    ("ask", None, PromptError),          # a question is required
    ("ask", "   ", PromptError),         # whitespace is not a question
    ("ask", "x" * (T.MAX_INPUT_CHARS + 1), PromptError),  # would not fit the encoder
    ("detect", "polyp", PromptError),    # <OD> takes no input; silently dropping it would mislead
    ("nonsense", None, UnknownTaskError),
])
def test_build_prompt_errors(task, text, error):
    with pytest.raises(error) as info:
        T.build_prompt(task, text)
    assert str(info.value)  # every error says something


def test_lookup_by_token_and_name_agree():
    for task in T.TASKS.values():
        assert T.get_task(task.token) is task is T.get_task(task.name)


def test_every_task_has_a_known_output_kind():
    assert {t.output for t in T.TASKS.values()} <= set(T.OUTPUT_KINDS)


def test_prompts_match_transformers_processor(hf_processor):
    # the HF processor's own expansion table is the reference for Florence-2's tasks
    for task in T.TASKS.values():
        if task.hf_parse_type is None:
            continue
        text = "polyp" if task.needs_input else None
        prompt = task.token + (text or "")
        assert hf_processor._construct_prompts([prompt])[0] == T.build_prompt(task, text)

"""The seed papers' evaluation extras: an expert-role prompt prefix, the swapped-image
ablation and the nonsense-question check (``gi-sdk eval --role-prefix / --swapped-images /
--nonsense``; ``gi_sdk.train.evaluate`` puts their blocks in the report).

- role prefix: the questions (``ask``, ``explain``, ``classify``) are asked behind an expert
  role, as the seed prompts do ("You are an expert gastroenterologist. ..."); the other tasks'
  inputs are names and regions, which a role would only garble.
- swapped images: every example is answered on ANOTHER example's image (a seeded
  derangement over the images, resized to the example's own size so coordinates compare)
  and scored against its own truth. A model that uses the image scores much worse there;
  one that answers from the question alone scores about the same.
- nonsense questions: each image is asked about things no endoscopy frame shows; the block
  counts the answers that affirm them (a "yes", a stated count above 0, an instance found).
"""
from __future__ import annotations

import numpy as np

from gi_sdk import tasks as T
from gi_sdk.decode import count_in_answer
from gi_sdk.errors import GiSdkError

from .examples import Example
from .metrics import yes_no

#: The expert role of the seed prompts (``--role-prefix`` without a value uses it).
EXPERT_ROLE = "You are an expert gastroenterologist reviewing an endoscopy image."

#: The tasks whose input is a question, the ones a role prefix goes on.
ROLE_TASKS = ("ask", "explain", "classify")

#: Questions no endoscopy frame can truly answer "yes" to: (task, input).
NONSENSE_QUESTIONS = (
    ("ask", "Is there an elephant in the image?"),
    ("ask", "How many cars are there in the image?"),
    ("count", "elephant"),
)


def with_role(examples: list, role: str = EXPERT_ROLE) -> list:
    """The examples with ``role`` before the question of every ``ROLE_TASKS`` example."""
    from .evaluate import task_input

    out = []
    for e in examples:
        text = task_input(e.task, e.prompt) if e.task in ROLE_TASKS else None
        if text is None:
            out.append(e)
            continue
        prompt = T.build_prompt(e.task, f"{role.strip()} {text}")
        out.append(Example(e.image, e.image_id, e.task, prompt, e.target, e.source))
    return out


def swap_images(examples: list, read_image, seed: int = 0) -> list:
    """The examples, each on another image (resized to its own), truth unchanged.

    read_image: image path or array -> BGR array. Fewer than two images: nothing to swap
    (ValueError)."""
    import cv2

    ids = list(dict.fromkeys(e.image_id for e in examples))
    if len(ids) < 2:
        raise ValueError("the swapped-image ablation needs at least two images")
    rng = np.random.default_rng([seed, 0x5EED])
    order = rng.permutation(len(ids))
    other = {ids[order[k]]: ids[order[(k + 1) % len(ids)]] for k in range(len(ids))}  # a cycle: no fixed point
    first = {}
    for e in examples:
        first.setdefault(e.image_id, e.image)
    cache: dict = {}
    out = []
    for e in examples:
        if e.image_id not in cache:
            own = read_image(first[e.image_id])
            donor = read_image(first[other[e.image_id]])
            cache[e.image_id] = cv2.resize(donor, (own.shape[1], own.shape[0]), interpolation=cv2.INTER_AREA)
        out.append(Example(cache[e.image_id], e.image_id, e.task, e.prompt, e.target, e.source))
    return out


def _affirms(task: str, result) -> bool:
    if T.get_task(task).output == T.TEXT:
        count = count_in_answer(result.answer)
        return yes_no(result.answer) == "yes" or (count is not None and count > 0)
    return bool(len(result)) or bool(result.count)


def nonsense_check(session, examples: list, read_image, max_images: int = 20, max_new_tokens: int | None = None,
                   questions=NONSENSE_QUESTIONS) -> dict:
    """Ask ``questions`` about up to ``max_images`` of the examples' images; count the answers
    that affirm them. ``{"n", "affirmed", "affirmed_rate", "parse_failures", "errors", "by_question"}``."""
    images = list(dict.fromkeys(e.image_id for e in examples))[:max_images]
    first = {}
    for e in examples:
        first.setdefault(e.image_id, e.image)
    by_question = {f"{task}: {text}": {"n": 0, "affirmed": 0} for task, text in questions}
    failures = errors = 0
    for image_id in images:
        frame = read_image(first[image_id])
        for task, text in questions:
            block = by_question[f"{task}: {text}"]
            try:
                result = session.run(frame, task, text, max_new_tokens=max_new_tokens)
            except GiSdkError:  # a family that cannot run this task (or a bad call): counted, not scored
                errors += 1
                continue
            block["n"] += 1
            failures += bool(result.parse_failed)
            block["affirmed"] += _affirms(task, result)
    n = sum(b["n"] for b in by_question.values())
    affirmed = sum(b["affirmed"] for b in by_question.values())
    for b in by_question.values():
        b["affirmed_rate"] = b["affirmed"] / b["n"] if b["n"] else None
    return {"images": len(images), "n": n, "affirmed": affirmed, "affirmed_rate": affirmed / n if n else None,
            "parse_failures": failures, "errors": errors, "by_question": by_question}

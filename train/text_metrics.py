"""Answer-text metrics of the Medico 2025 task: BLEU, ROUGE-1/2/L, METEOR, and chrF++.

Pure functions over lists of strings (predictions and one reference each), computed by the
maintained implementations the challenge's own scorer builds on, with their settings:

- BLEU: ``sacrebleu`` corpus BLEU, 13a tokenization, no smoothing, as the Medico 2025
  scorer (HF ``evaluate``'s "bleu": 13a tokens, unsmoothed corpus BLEU); reported in [0, 1].
- ROUGE-1/2/L: ``rouge-score`` F-measure (its own lower-casing tokenizer, no stemmer, as
  HF ``evaluate``'s default), the mean over samples (``evaluate`` reports a bootstrap
  median of the same per-sample scores, which differs from the mean in the 3rd decimal).
- METEOR: ``nltk.translate.meteor_score`` averaged over samples, as ``evaluate`` does.
  METEOR's synonym stage needs WordNet 3.0, which nltk downloads at run time; gi_sdk never
  downloads. It uses, in this order: the folder in ``$GI_SDK_WORDNET``; nltk's own data
  (``nltk.download("wordnet")`` run once by you, while online); the WordNet 3.0 database
  of Debian / Ubuntu's ``wordnet-base`` package (``apt-get install wordnet-base``,
  /usr/share/wordnet). No PyPI package ships that database in a form nltk reads, so
  without one of these METEOR is reported as None, and ``wordnet_source()`` says why.
  Words are split as nltk's ``word_tokenize`` does (Punkt sentences, then nltk's
  Treebank word tokenizer) but with an untrained Punkt: its pretrained model is another
  download; the two differ only around abbreviations such as "e.g.".
- chrF++: ``sacrebleu`` chrF with word bigrams (``word_order=2``), corpus level, in [0, 1].

>>> text_scores(["There is one polyp."], ["There is one polyp."])["rougeL"]
1.0
"""
from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache
from pathlib import Path

from gi_sdk.errors import require

#: Where Debian / Ubuntu's ``wordnet-base`` puts the WordNet 3.0 database.
DEBIAN_WORDNET = Path("/usr/share/wordnet")

# WordNet 3.0's lexicographer files, numbered as in its lexnames(5WN) manual page. nltk's
# reader insists on a "lexnames" file that Debian's package does not ship (it documents it
# in that manual page instead), so the reader below is given it from this table.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
_WORDNET_FILES = ("data.noun", "index.noun", "noun.exc", "data.verb", "index.verb", "verb.exc")


def _clean(texts) -> list[str]:
    return ["" if t is None else str(t).strip() for t in texts]


def _pairs(predictions, references) -> tuple[list[str], list[str]]:
    preds, refs = _clean(predictions), _clean(references)
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions for {len(refs)} references")
    return preds, refs


def bleu(predictions, references) -> float | None:
    """Corpus BLEU in [0, 1] (sacrebleu, 13a, unsmoothed); None without samples.

    >>> bleu(["the polyp is red"], ["the polyp is red"])
    1.0
    """
    preds, refs = _pairs(predictions, references)
    if not preds:
        return None
    metrics = require("sacrebleu", "train").metrics
    # rounded: sacrebleu works in percent, and 100 / 100 comes back as 1.0000000000000004
    return round(metrics.BLEU(tokenize="13a", smooth_method="none").corpus_score(preds, [refs]).score / 100, 10)


def chrf_plus_plus(predictions, references) -> float | None:
    """Corpus chrF++ in [0, 1] (sacrebleu chrF, character 6-grams + word 2-grams)."""
    preds, refs = _pairs(predictions, references)
    if not preds:
        return None
    metrics = require("sacrebleu", "train").metrics
    return round(metrics.CHRF(word_order=2).corpus_score(preds, [refs]).score / 100, 10)


def rouge(predictions, references) -> dict:
    """Mean ROUGE-1 / ROUGE-2 / ROUGE-L F-measure over samples (rouge-score, no stemmer).

    Returns ``{"rouge1", "rouge2", "rougeL"}``, each None without samples.
    """
    preds, refs = _pairs(predictions, references)
    keys = ("rouge1", "rouge2", "rougeL")
    if not preds:
        return dict.fromkeys(keys)
    require("rouge_score", "train")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=False)
    totals = dict.fromkeys(keys, 0.0)
    for pred, ref in zip(preds, refs):
        scores = scorer.score(ref, pred)  # (target, prediction)
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: totals[k] / len(preds) for k in keys}


# ---------------------------------------------------------------------------------- METEOR

def _wordnet_reader(root: Path, with_lexnames: bool):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if str(root) not in nltk.data.path:  # nltk reads corpora only from folders on its data path
        nltk.data.path.append(str(root))

    class _Reader(WordNetCorpusReader):
        """nltk's reader over a plain WordNet 3.0 dict folder that lacks ``lexnames``."""

        def open(self, file):
            if file == "lexnames" and not with_lexnames:
                return io.StringIO("".join(f"{i:02d}\t{name}\t{_LEX_POS[name.split('.')[0]]}\n"
                                           for i, name in enumerate(_LEXNAMES)))
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # this IS WordNet 3.0: no mapping onto nltk's copy (used only by the multilingual
            # OMW functions, which METEOR does not call, and which would look nltk's copy up)
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore")
        return _Reader(str(root), None)


def _is_wordnet_folder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _WORDNET_FILES)


@lru_cache(maxsize=1)
def _wordnet() -> tuple:
    """(WordNet reader or None, where it came from or why there is none)."""
    require("nltk", "train")
    import nltk

    env = os.environ.get("GI_SDK_WORDNET")
    if env:
        folder = Path(env)
        if not _is_wordnet_folder(folder):
            return None, f"$GI_SDK_WORDNET={env} is not a WordNet 3.0 dict folder (data.noun, index.noun, ...)"
        return _wordnet_reader(folder, (folder / "lexnames").is_file()), f"WordNet 3.0 from $GI_SDK_WORDNET={env}"
    try:
        nltk.data.find("corpora/wordnet")  # a LookupError, never a download, when absent
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet, "WordNet 3.0 from nltk_data (nltk.download('wordnet'))"
    except LookupError:
        pass
    if _is_wordnet_folder(DEBIAN_WORDNET):
        return _wordnet_reader(DEBIAN_WORDNET, False), f"WordNet 3.0 from {DEBIAN_WORDNET} (Debian wordnet-base)"
    return None, ("METEOR needs WordNet 3.0 and none is installed (it is never downloaded at run time): "
                  "apt-get install wordnet-base, or once while online python -m nltk.downloader wordnet, "
                  "or point $GI_SDK_WORDNET at a WordNet 3.0 dict folder")


def wordnet_source() -> str:
    """Which WordNet METEOR uses, or why METEOR is unavailable."""
    return _wordnet()[1]


def _words(text: str) -> list[str]:
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    words = NLTKWordTokenizer()
    return [w for sentence in PunktSentenceTokenizer().tokenize(text) for w in words.tokenize(sentence)]


def meteor(predictions, references) -> float | None:
    """Mean METEOR over samples (nltk, alpha 0.9, beta 3, gamma 0.5); None without samples
    or without WordNet (see ``wordnet_source``)."""
    preds, refs = _pairs(predictions, references)
    wordnet, _ = _wordnet()
    if not preds or wordnet is None:
        return None
    from nltk.translate.meteor_score import meteor_score

    scores = [meteor_score([_words(ref)], _words(pred), wordnet=wordnet) for pred, ref in zip(preds, refs)]
    return sum(scores) / len(scores)


def text_scores(predictions, references) -> dict:
    """Every answer-text metric: ``n``, ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``, ``meteor``,
    ``chrf_pp`` (all in [0, 1], None without samples) and ``meteor_wordnet`` (its source)."""
    preds, refs = _pairs(predictions, references)
    return {"n": len(preds), "bleu": bleu(preds, refs), **rouge(preds, refs), "meteor": meteor(preds, refs),
            "chrf_pp": chrf_plus_plus(preds, refs), "meteor_wordnet": wordnet_source()}

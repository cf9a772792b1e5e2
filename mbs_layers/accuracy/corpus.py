"""An offline English text corpus: sentences from the Python standard library's docstrings.

Every Python installation carries it, so fine-tuning and activation capture need no download.
The module list is fixed and sentences are de-duplicated and sorted, so the corpus is the same
for a given Python version (recorded with each result).
"""

from __future__ import annotations

import importlib
import inspect
import random
import re

MODULES = (
    "argparse",
    "collections",
    "csv",
    "datetime",
    "functools",
    "heapq",
    "inspect",
    "itertools",
    "json",
    "logging",
    "pathlib",
    "random",
    "re",
    "shutil",
    "statistics",
    "string",
    "subprocess",
    "tempfile",
    "textwrap",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _docstrings():
    for name in MODULES:
        module = importlib.import_module(name)
        yield inspect.getdoc(module)
        for _, member in inspect.getmembers(module):
            if inspect.isclass(member) or inspect.isfunction(member) or inspect.isbuiltin(member):
                yield inspect.getdoc(member)


def stdlib_sentences(min_words: int = 6, max_words: int = 40) -> list[str]:
    """Prose sentences (letters only in most words) from the stdlib docstrings, sorted, unique."""
    found = set()
    for doc in filter(None, _docstrings()):
        for sentence in _SENTENCE_END.split(" ".join(doc.split())):
            words = sentence.split()
            if min_words <= len(words) <= max_words and sum(w.isalpha() for w in words) >= 0.7 * len(words):
                found.add(sentence)
    return sorted(found)


def split_corpus(sentences: list[str], n_train: int, n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint train / test samples drawn with ``seed``."""
    if n_train + n_test > len(sentences):
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the corpus ({len(sentences)} sentences)")
    order = random.Random(seed).sample(sentences, n_train + n_test)
    return order[:n_train], order[n_train:]

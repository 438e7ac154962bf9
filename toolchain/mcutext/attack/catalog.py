"""The attacks, the runtimes they run against, their parameters and one-line descriptions,
and the budget rule (words per sentence, or a share of them).
"""

from __future__ import annotations

import math

import numpy as np

from ..common.errors import McutextError


ATTACKS = ("char", "deepwordbug", "adaptive", "typo", "pwws", "hotflip")


# Short name of the word-level attack of DESIGN.md (the char-level one is `char` itself).
ATTACK_ALIASES = {"word": "pwws"}
RUNTIMES = ("keras", "litert", "tflm", "device")
HOST_RUNTIMES = ("keras", "litert", "tflm")


# Search parameters (fixed, so that budgets and figures are comparable across runs).
# deepwordbug / hotflip: random edits of each kind per word. Each edit gives the word a new
# hashed word feature, so more candidates find a worse one: on the sst2 student (300 test
# sentences, tflm, budget 2) accuracy under attack is 0.26 / 0.22 / 0.17 / 0.14 with 2 / 4 /
# 8 / 16 per kind, at 31 / 41 / 55 / 80 queries. 8 keeps queries near DeepWordBug's own
# (32.7 on MR) while the device path (one serial exchange per query) stays practical.
CHAR_EDITS_PER_KIND = 8
TYPO_MAX_CANDIDATES = 32     # typo: candidates per word
PWWS_MAX_SYNONYMS = 30       # pwws: synonyms scored per word
HOTFLIP_SYNONYMS = 20        # hotflip: synonyms per word among its candidates
HOTFLIP_BEAM = 8             # hotflip: first-order best candidates evaluated exactly per step


# adaptive: the tokenizer's encodings of a word's one-edit family (certify.word_moves).
ADAPTIVE_PER_WORD = 32       # distinct encodings tried per word (a seeded sample when more)
ADAPTIVE_BEAM = 4            # edit sets kept from one step to the next
ADAPTIVE_EXPAND = 8          # a word's best single moves tried from each kept edit set
ADAPTIVE_EXHAUSTIVE = 4096   # every combination within the budget when there are this few
ATTACK_INFO = {
    "char": "char-level, black box: deepwordbug, and the adaptive attack where it fails (per "
            "sentence the stronger of the two)",
    "adaptive": "char-level, black box, knows the tokenizer: each word's one-edit variants "
                "grouped by the encoding they give, up to "
                f"{ADAPTIVE_PER_WORD} encodings per word; every combination when at most "
                f"{ADAPTIVE_EXHAUSTIVE}, else every single move then a beam of "
                f"{ADAPTIVE_BEAM} over the {ADAPTIVE_EXPAND} best moves per word",
    "deepwordbug": "char-level, black box: leave-one-out word ranking, best of "
                   f"{CHAR_EDITS_PER_KIND} random swap/substitute/delete/insert edits per kind "
                   "per word, one character edit per word",
    "typo": "char-level, black box (Pruthi et al.): one internal swap/drop/add/keyboard-"
            f"neighbour edit per word, up to {TYPO_MAX_CANDIDATES} candidates per word",
    "pwws": "word-level, black box (PWWS): WordNet synonym substitution ordered by "
            f"softmax(saliency) x best probability drop, up to {PWWS_MAX_SYNONYMS} synonyms "
            "per word",
    "hotflip": "white box on the float Keras model: embedding-gradient choice of word and "
               f"replacement (char edits + {HOTFLIP_SYNONYMS} WordNet synonyms), "
               f"{HOTFLIP_BEAM} best evaluated exactly per step; texts replayed on the runtime",
}


# --- budgets --------------------------------------------------------------------------------
BUDGET_RULE = "a whole number of words (>= 1) or a share of a sentence's words in (0, 1)"


def check_budget(budget) -> int | float:
    """A budget as given by a user or a caller (number or string): a whole number of words
    >= 1 (as int), or a share of the words in (0, 1) (as float); McutextError otherwise."""
    raw = budget
    if isinstance(budget, bool):
        budget = None
    elif isinstance(budget, str):
        try:
            budget = float(budget.strip())
        except ValueError:
            budget = None
    elif not isinstance(budget, (int, float, np.integer, np.floating)):
        budget = None
    if budget is None or not math.isfinite(budget) or not budget > 0 or (
            budget >= 1 and budget != int(budget)):
        raise McutextError(f"bad budget {raw!r}: must be {BUDGET_RULE}",
                           hint="e.g. --budget 2 (two words) or --budget 0.1 (10 % of the words)")
    return int(budget) if budget >= 1 else float(budget)


def resolve_attack(name: str) -> str:
    """The attack's canonical name (alias: word -> pwws)."""
    key = ATTACK_ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in ATTACKS:
        names = ", ".join(list(ATTACK_ALIASES) + list(ATTACKS))
        raise McutextError(f"unknown attack {name!r} (use one of: {names})")
    return key


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise McutextError(f"unknown runtime {runtime!r} (use one of: {', '.join(RUNTIMES)})")
    return runtime


def budget_words(budget: float, n_words: int) -> int:
    """Words that may change in a sentence of `n_words` words."""
    if budget >= 1:
        return int(budget)
    return max(1, math.floor(budget * n_words))


def describe_budget(budget: float) -> str:
    if budget >= 1:
        b = int(budget)
        return f"at most {b} word{'s' if b > 1 else ''} edited per sentence"
    return f"at most {budget:.0%} of a sentence's words edited (at least 1)"

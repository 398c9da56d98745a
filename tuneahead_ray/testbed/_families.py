"""Synthetic instruction task families with exact-match answers and graded difficulty.

Each family maps ``(rng, level)`` to a ``(prompt, answer)`` pair. Levels run from 1 (easy) to ``MAX_LEVEL`` (hard)
and grow operand sizes or sequence lengths, so a small model improves gradually rather than all at once. Three
families are skills (arithmetic, counting, rule-based classification) and three are knowledge about a fixed
synthetic world of entities (the analogue of MMLU's facts), where a higher level means a rarer entity that
pretraining has seen less. The off-target families share the surface (short prompts, short answers) but teach
nothing the benchmark asks for, like fine-tuning on the wrong domain.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_LEVEL", "TaskFamily", "BENCHMARK_FAMILIES", "OFF_TARGET_FAMILIES", "FAMILIES", "family"]

MAX_LEVEL = 5
_LETTERS = string.ascii_lowercase
_SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bo", "da")

Generator = Callable[[random.Random, int], tuple[str, str]]


@dataclass(frozen=True)
class TaskFamily:
    """A task family: a name, what it tests, and a generator of (prompt, answer) at a difficulty level."""

    name: str
    description: str
    generate: Generator
    on_target: bool = True

    def sample(self, rng: random.Random, level: int) -> tuple[str, str]:
        if not 1 <= level <= MAX_LEVEL:
            raise ValueError(f"level must be in 1..{MAX_LEVEL}, got {level}")
        return self.generate(rng, level)


def _word(rng: random.Random, length: int, alphabet: str = _LETTERS) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _add(rng: random.Random, level: int) -> tuple[str, str]:
    # Level 1: one digit + one digit ... level 5: three digits + three digits.
    digits_a, digits_b = [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)][level - 1]
    a = rng.randrange(10 ** (digits_a - 1) if digits_a > 1 else 0, 10**digits_a)
    b = rng.randrange(10 ** (digits_b - 1) if digits_b > 1 else 0, 10**digits_b)
    return f"add {a} {b}", str(a + b)


def _reverse(rng: random.Random, level: int) -> tuple[str, str]:
    word = _word(rng, level + 1, "abcdefghij")
    return f"reverse {word}", word[::-1]


def _count(rng: random.Random, level: int) -> tuple[str, str]:
    alphabet = "abc" if level < 3 else "abcd"
    text = _word(rng, 2 * level + 1, alphabet)
    target = rng.choice(alphabet)
    return f"count {target} in {text}", str(text.count(target))


def _compare(rng: random.Random, level: int) -> tuple[str, str]:
    # Classification by a rule: is the first number smaller or larger? More digits, longer shared prefixes.
    low = 10 ** (level - 1) if level > 1 else 0
    a = rng.randrange(low, 10**level)
    b = a
    while b == a:
        keep = rng.randint(0, level - 1)
        b = int(str(a)[:keep] + str(rng.randrange(low, 10**level))[keep:])
    return f"compare {a} {b}", "less" if a < b else "more"


def _pseudo_words(rng: random.Random, count: int) -> tuple[str, ...]:
    pool = [a + b for a in _SYLLABLES for b in _SYLLABLES if a != b]
    return tuple(rng.sample(pool, count))


_WORLD_RNG = random.Random(1_300)
#: A fixed synthetic world: entities with attributes, the testbed's "general knowledge".
ENTITIES = _pseudo_words(_WORLD_RNG, 80)
_COLORS = ("red", "blue", "green", "gold", "pink", "gray", "teal", "plum")
_TOWNS = ("vento", "mirak", "solde", "panu", "kreth", "obal", "tisna", "lumo", "dravi", "eskel")
_COLOR_OF = {e: _WORLD_RNG.choice(_COLORS) for e in ENTITIES}
_TOWN_OF = {e: _WORLD_RNG.choice(_TOWNS) for e in ENTITIES}
_CODE_OF = {e: str(_WORLD_RNG.randrange(10, 100)) for e in ENTITIES}


def _entity(rng: random.Random, level: int) -> str:
    """Entities are split into MAX_LEVEL popularity bands; pretraining sees band 1 often and band 5 rarely."""
    band = len(ENTITIES) // MAX_LEVEL
    return rng.choice(ENTITIES[(level - 1) * band : level * band])


def _color(rng: random.Random, level: int) -> tuple[str, str]:
    entity = _entity(rng, level)
    return f"color of {entity}", _COLOR_OF[entity]


def _town(rng: random.Random, level: int) -> tuple[str, str]:
    entity = _entity(rng, level)
    return f"home of {entity}", _TOWN_OF[entity]


def _code(rng: random.Random, level: int) -> tuple[str, str]:
    entity = _entity(rng, level)
    return f"code of {entity}", _CODE_OF[entity]


def _cipher(rng: random.Random, level: int) -> tuple[str, str]:
    word = _word(rng, level + 1, "abcdefghijklmnopqrstuvwxy")
    return f"shift {word}", "".join(chr(ord(ch) + 1) for ch in word)


def _chatter(rng: random.Random, level: int) -> tuple[str, str]:
    def phrase(n: int) -> str:
        return " ".join(rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) for _ in range(n))

    return f"say {phrase(level)}", phrase(rng.randint(1, 3))


BENCHMARK_FAMILIES: tuple[TaskFamily, ...] = (
    TaskFamily("add", "integer addition; operand digits grow with level", _add),
    TaskFamily("count", "count a letter's occurrences; string length grows with level", _count),
    TaskFamily("compare", "classify a pair of numbers as less/more; digits grow with level", _compare),
    TaskFamily("color", "classify an entity by its colour (knowledge); rarer entities at higher levels", _color),
    TaskFamily("home", "look up an entity's home town (knowledge); rarer entities at higher levels", _town),
    TaskFamily("code", "recall an entity's two-digit code (knowledge); rarer entities at higher levels", _code),
)
OFF_TARGET_FAMILIES: tuple[TaskFamily, ...] = (
    TaskFamily("reverse", "reverse a word (not benchmarked)", _reverse, on_target=False),
    TaskFamily("shift", "shift each letter by one (not benchmarked)", _cipher, on_target=False),
    TaskFamily("chatter", "free-form pseudo-word chatter (not benchmarked)", _chatter, on_target=False),
)
FAMILIES: dict[str, TaskFamily] = {fam.name: fam for fam in BENCHMARK_FAMILIES + OFF_TARGET_FAMILIES}


def family(name: str) -> TaskFamily:
    """Look up a family by name, with the known names in the error."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; known: {sorted(FAMILIES)}") from None

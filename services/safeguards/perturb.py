"""Seeded, reproducible variants of a case's input (synthetic scenarios), as pure functions.

Each perturbation walks the input JSON and changes some of its leaves (or keys); the random
generator is seeded from (seed, parent case, perturbation, variant), so the same request
always yields the same variants, on any machine and Python version (random.Random seeds a
str through SHA-512).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class Perturbation(StrEnum):
    TYPOS = "typos"
    CASING = "casing"
    WHITESPACE = "whitespace"
    CONFUSABLES = "confusables"
    NUMERIC_NOISE = "numeric_noise"
    MISSING_FEATURES = "missing_features"
    NULL_FEATURES = "null_features"
    REORDERED_KEYS = "reordered_keys"


# Latin letters and look-alikes from other scripts (Unicode's confusables, the common ones).
CONFUSABLE = {
    "a": "\u0430",  # Cyrillic a
    "c": "\u0441",
    "e": "\u0435",
    "i": "\u0456",
    "o": "\u043e",
    "p": "\u0440",
    "x": "\u0445",
    "y": "\u0443",
    "A": "\u0391",  # Greek Alpha
    "B": "\u0392",
    "E": "\u0395",
    "H": "\u0397",
    "K": "\u039a",
    "O": "\u039f",
    "T": "\u03a4",
}
# At most this share of the eligible leaves changes per variant (at least one does).
RATE = 0.3


def rng_for(seed: int, parent_id: str, perturbation: str, variant: int) -> random.Random:
    return random.Random(f"{seed}:{parent_id}:{perturbation}:{variant}")


def perturb(
    value: Any, perturbation: Perturbation, rng: random.Random, tolerance: float = 0.01
) -> Any:
    """A variant of `value`; never the same object, and unchanged where nothing applies."""
    if perturbation in STRING_EDITS:
        return _leaves(
            value, rng, lambda v: isinstance(v, str) and v.strip() != "", STRING_EDITS[perturbation]
        )
    if perturbation is Perturbation.NUMERIC_NOISE:
        return _leaves(
            value, rng, lambda v: _can_vary(v, tolerance), lambda v, r: _noisy(v, r, tolerance)
        )
    if perturbation in (Perturbation.MISSING_FEATURES, Perturbation.NULL_FEATURES):
        return _drop_feature(value, rng, null=perturbation is Perturbation.NULL_FEATURES)
    return _reorder(value, rng)


def _can_vary(value: Any, tolerance: float) -> bool:
    """A number noise can move within the tolerance (an integer must stay one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
        return False
    return isinstance(value, float) or abs(value) * tolerance >= 1


def _paths(value: Any, keep: Callable[[Any], bool], prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, keep, (*prefix, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _paths(v, keep, (*prefix, i))]
    return [prefix] if keep(value) else []


def _leaves(
    value: Any,
    rng: random.Random,
    keep: Callable[[Any], bool],
    edit: Callable[[Any, random.Random], Any],
) -> Any:
    paths = _paths(value, keep)
    if not paths:
        return _copy(value)
    chosen = set(rng.sample(paths, max(1, int(len(paths) * RATE))))

    def walk(node: Any, path: tuple) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return edit(node, rng) if path in chosen else node

    return walk(value, ())


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _typo(text: str, rng: random.Random) -> str:
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if not letters:
        return text
    i = rng.choice(letters)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == "drop" and len(text) > 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _casing(text: str, rng: random.Random) -> str:
    changed = rng.choice((str.upper, str.lower, str.title, str.swapcase))(text)
    return changed if changed != text else text.swapcase()


def _whitespace(text: str, rng: random.Random) -> str:
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    kind = rng.choice(("pad", "double", "tab"))
    if kind == "double" and spaces:
        i = rng.choice(spaces)
        return text[:i] + "  " + text[i + 1 :]
    if kind == "tab" and spaces:
        i = rng.choice(spaces)
        return text[:i] + "\t" + text[i + 1 :]
    return f" {text}  "


def _confusable(text: str, rng: random.Random) -> str:
    spots = [i for i, ch in enumerate(text) if ch in CONFUSABLE]
    if not spots:
        return text
    picked = set(rng.sample(spots, max(1, len(spots) // 4)))
    return "".join(CONFUSABLE[ch] if i in picked else ch for i, ch in enumerate(text))


STRING_EDITS: dict[Perturbation, Callable[[str, random.Random], str]] = {
    Perturbation.TYPOS: _typo,
    Perturbation.CASING: _casing,
    Perturbation.WHITESPACE: _whitespace,
    Perturbation.CONFUSABLES: _confusable,
}


def _noisy(number: float, rng: random.Random, tolerance: float) -> float | int:
    """A different value within +-tolerance (relative); an integer stays an integer."""
    if isinstance(number, int):
        bound = int(abs(number) * tolerance)
        return number + rng.choice([d for d in range(-bound, bound + 1) if d])
    noisy = number * (1 + rng.uniform(-tolerance, tolerance))
    return noisy if noisy != number else number * (1 + tolerance / 2)


def _drop_feature(value: Any, rng: random.Random, *, null: bool) -> Any:
    """One key of the input object removed (or set to null); nested objects are features too."""
    keys = _key_paths(value)
    if not keys:
        return _copy(value)
    target = rng.choice(keys)

    def walk(node: Any, path: tuple) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if (*path, k) == target:
                    if null:
                        out[k] = None
                    continue
                out[k] = walk(v, (*path, k))
            return out
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return walk(value, ())


def _key_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if v is not None:
                out.append((*prefix, k))
            out.extend(_key_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_key_paths(v, (*prefix, i)))
    return out


def _reorder(value: Any, rng: random.Random) -> Any:
    """Every object's keys in another order (a model must not depend on it)."""
    if isinstance(value, dict):
        items = list(value.items())
        if len(items) > 1:
            original = [k for k, _ in items]
            for _ in range(5):
                rng.shuffle(items)
                if [k for k, _ in items] != original:
                    break
        return {k: _reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_reorder(v, rng) for v in value]
    return value

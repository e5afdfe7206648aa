"""The shop's catalogue and members: what its pages show and what its visitors search and log in with.

Plain data with no Django import, shared by the views and by the demo's traffic (searchers draw their
words from these texts). Fixed: every run meets the same shop.
"""

from __future__ import annotations

__all__ = ["PASSWORDS", "PER_PAGE", "PRODUCTS", "USERS", "words"]

_NOUNS = ("jacket", "mug", "lamp", "desk", "socks", "backpack", "kettle", "shirt", "shoes", "scarf", "teapot",
          "blanket", "umbrella", "notebook", "bottle", "chair", "candle", "gloves", "wallet", "towel")  # fmt: skip
_ADJECTIVES = ("red", "blue", "green", "black", "waterproof", "vintage", "compact", "cosy")
_MATERIALS = ("cotton", "wool", "ceramic", "steel", "oak", "leather", "linen", "bamboo", "glass")
_FEATURES = ("made to last", "easy to clean", "light enough for travel", "a customer favourite",
             "sized for small flats", "ethically sourced", "with a two-year warranty")  # fmt: skip

PER_PAGE = 20
_STOP = {"for", "with", "the", "and", "made", "enough", "last"}


def _product(pk: int, adjective: str, material: str, noun: str) -> dict[str, object]:
    feature = _FEATURES[pk % len(_FEATURES)]
    return {
        "id": pk,
        "name": f"{adjective.capitalize()} {material} {noun}",
        "description": f"A {adjective} {noun} in {material}, {feature}.",
        "price": 5 + pk % 17,
    }


PRODUCTS: dict[int, dict[str, object]] = {
    pk: _product(pk, _ADJECTIVES[(pk + pk // 20) % 8], _MATERIALS[pk * 7 % 9], _NOUNS[pk % 20]) for pk in range(1, 121)
}

USERS = ("ana", "ben", "chloe", "dev", "eli", "fay", "gus", "hana", "ivo", "jade", "kai", "lea", "milo", "nia",
         "omar", "pia", "quin", "rosa", "sam", "tess")  # fmt: skip
PASSWORDS = {user: user + "-secret" for user in USERS}


def words() -> list[str]:
    """Every word of the catalogue's names and descriptions, each once, most frequent first."""
    counts: dict[str, int] = {}
    for product in PRODUCTS.values():
        text = f"{product['name']} {product['description']}".lower().replace(",", " ").replace(".", " ")
        for word in text.split():
            if len(word) > 2 and word not in _STOP:
                counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))

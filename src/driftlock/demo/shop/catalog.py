"""The shop's catalogue and members: what its pages show and what its visitors search and log in with.

Plain data with no Django import, shared by the views and by the demo's traffic (searchers draw their
words from these texts). Fixed: every run meets the same shop.
"""

from __future__ import annotations

import random

__all__ = ["PASSWORDS", "PER_PAGE", "PRODUCTS", "USERS", "words"]

_NOUNS = ("jacket", "mug", "lamp", "desk", "socks", "backpack", "kettle", "shirt", "shoes", "scarf", "teapot",
          "blanket", "umbrella", "notebook", "bottle", "chair", "candle", "gloves", "wallet", "towel", "apron",
          "basket", "cushion", "planter", "skillet", "thermos", "hoodie", "beanie", "tote", "journal")  # fmt: skip
_COLOURS = ("red", "blue", "green", "black", "white", "grey", "navy", "olive", "mustard", "charcoal", "sand", "rust")
_MATERIALS = ("cotton", "wool", "ceramic", "steel", "oak", "leather", "linen", "bamboo", "glass", "merino", "cork",
              "walnut", "canvas", "enamel", "copper")  # fmt: skip
_QUALITIES = ("waterproof", "vintage", "compact", "cosy", "lightweight", "handmade", "recycled", "insulated",
              "foldable", "durable", "breathable", "stackable", "organic", "minimal", "rustic", "classic", "sturdy",
              "soft", "warm", "slim", "padded", "washable", "adjustable", "reusable")  # fmt: skip
_USES = ("hiking", "office", "kitchen", "garden", "camping", "travel", "picnic", "gym", "beach", "school", "commute",
         "winter", "summer", "festival", "workshop", "balcony", "bedroom", "study", "cycling", "fishing")  # fmt: skip
_MAKERS = ("Fjordline", "Oakum", "Brightwell", "Tallis", "Norrow", "Kestrel", "Milloway", "Huxley", "Pemberton",
           "Vaska", "Corrin", "Ashgrove")  # fmt: skip
_PHRASES = ("made to last", "easy to clean", "light enough for travel", "a customer favourite", "sized for small flats",
            "ethically sourced", "with a two-year warranty", "dishwasher safe", "hand stitched in Portugal",
            "finished with natural wax", "gift wrapped on request", "tested on mountain trails",
            "designed in Copenhagen", "fits under airline seats", "keeps drinks hot for twelve hours")  # fmt: skip
_STOP = {
    "for",
    "with",
    "the",
    "and",
    "made",
    "enough",
    "last",
    "a",
    "an",
    "in",
    "on",
    "to",
    "by",
    "of",
    "it",
    "is",
    "good",
}

PER_PAGE = 20


def _catalogue(count: int) -> dict[int, dict[str, object]]:
    rng = random.Random(0)  # the shop's own texts: the same for every run
    products: dict[int, dict[str, object]] = {}
    for pk in range(1, count + 1):
        noun, colour, material = _NOUNS[pk % len(_NOUNS)], rng.choice(_COLOURS), rng.choice(_MATERIALS)
        quality, use, maker = rng.choice(_QUALITIES), rng.choice(_USES), rng.choice(_MAKERS)
        description = (
            f"A {quality} {colour} {noun} in {material} by {maker}, {rng.choice(_PHRASES)}. "
            f"Good for {use} and {rng.choice(_USES)}; {rng.choice(_QUALITIES)}, {rng.choice(_QUALITIES)} and "
            f"{rng.choice(_PHRASES)}."
        )
        products[pk] = {
            "id": pk,
            "name": f"{maker} {quality} {material} {noun}",
            "description": description,
            "price": 5 + pk % 17,
        }
    return products


PRODUCTS = _catalogue(120)

USERS = ("ana", "ben", "chloe", "dev", "eli", "fay", "gus", "hana", "ivo", "jade", "kai", "lea", "milo", "nia",
         "omar", "pia", "quin", "rosa", "sam", "tess")  # fmt: skip
PASSWORDS = {user: user + "-secret" for user in USERS}


def words() -> list[str]:
    """Every word of the catalogue's names and descriptions, each once, most frequent first."""
    counts: dict[str, int] = {}
    for product in PRODUCTS.values():
        text = f"{product['name']} {product['description']}".lower()
        for word in text.replace(",", " ").replace(".", " ").replace(";", " ").split():
            if len(word) > 2 and word not in _STOP:
                counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: (-counts[w], w))

"""The order book: a generated recipe corpus and the character tokenizer that measures it.

A guest's *order* ("Make a birthday cake", "Something quick with apples") is answered by a
*recipe*: a title, servings and time, ingredients with quantities, numbered steps, and an
end-of-recipe token. Everything is generated from a seed, so the corpus is identical on
every machine (its SHA-256 is part of the shipped weights' provenance).

The structure a model must learn, not copy: the dish asked for decides the ingredient list
and the method; the flavour named in the order reappears in the title, the ingredients and
the steps; "quick" means a short time and few steps; "for 6 people" means "Serves 6" and
quantities scaled to six; amounts, times and temperatures vary from recipe to recipe.

Tokenizer: one token per character of a fixed vocabulary (``VOCAB``) plus two special
tokens, ``<pad>`` (id 0, left padding of prompts) and ``<end>`` (id 1, end of recipe).
**Unknown characters** (anything outside ``VOCAB``, e.g. "é" or an emoji) raise a
``ValueError`` naming them and their positions; ``encode(text, errors="replace")`` maps each
one to ``"?"`` instead (a character the chef knows), so ``decode(encode(t, errors="replace"))``
differs from ``t`` exactly there.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

PAD, END = "<pad>", "<end>"
# Every printable character the corpus may use; fixed, so token ids never depend on the data.
VOCAB = "\n !'(),-./0123456789:?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz°"
REPLACEMENT = "?"  # what errors="replace" writes for an unknown character
ORDER_PREFIX, RECIPE_PREFIX = "Order: ", "Recipe: "


@dataclasses.dataclass(frozen=True)
class CharTokenizer:
    """Measuring cups: text <-> token ids, one id per character (ids 0, 1 are <pad>, <end>)."""

    vocab: str = VOCAB  # the characters, in id order after the two special tokens

    @property
    def specials(self) -> tuple[str, str]:
        return (PAD, END)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def end_id(self) -> int:
        return 1

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2

    def tokens(self) -> list[str]:
        """Every token as text, in id order."""
        return [PAD, END] + list(self.vocab)

    def encode(self, text: str, *, errors: str = "strict") -> np.ndarray:
        """Text -> int32 ids. Unknown characters raise (``errors="strict"``) or become "?"."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        table = {c: i + 2 for i, c in enumerate(self.vocab)}
        unknown = [(i, c) for i, c in enumerate(text) if c not in table]
        if unknown and errors == "strict":
            shown = ", ".join(f"{c!r} at {i}" for i, c in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(
                f"text has {len(unknown)} character(s) outside the tokenizer's vocabulary: "
                f"{shown}{more}; the chef knows only {self.vocab!r} (pass errors='replace' "
                f"to write {REPLACEMENT!r} instead)")
        rep = table[REPLACEMENT]
        return np.array([table.get(c, rep) for c in text], dtype=np.int32)

    def decode(self, ids, *, specials: bool = False) -> str:
        """Ids -> text. <pad> is dropped; <end> is dropped too unless ``specials=True``."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got values from "
                             f"{int(ids.min())} to {int(ids.max())}")
        out = []
        for i in ids.tolist():
            if i >= 2:
                out.append(self.vocab[i - 2])
            elif i == self.end_id and specials:
                out.append(END)
        return "".join(out)


def prompt(order: str) -> str:
    """The text a guest's order becomes before the chef answers: ``"Order: ...\\nRecipe: "``."""
    if not isinstance(order, str):
        raise TypeError(f"order must be a str, got {type(order).__name__}")
    if not order.strip():
        raise ValueError("order must not be empty: say what you would like, e.g. 'Make a birthday cake'")
    return f"{ORDER_PREFIX}{order.strip()}\n{RECIPE_PREFIX}"


# ---------------------------------------------------------------- the pantry of words
# Each dish: base ingredients (name, grams-or-ml per 4 servings, unit), method steps with
# {f} for the flavour, its oven temperature (None: hob), minutes range, and flavours it takes.
_SWEET = ("apples", "pears", "lemons", "chocolate", "bananas", "berries", "carrots", "pumpkin",
          "honey", "cinnamon", "oranges", "cherries", "plums", "coconut", "almonds")
_SAVOURY = ("spinach", "mushrooms", "tomatoes", "lentils", "chicken", "cheese", "leeks",
            "peppers", "beans", "potatoes", "onions", "peas", "courgettes", "chickpeas")

_DISHES = {
    "cake": dict(flavours=_SWEET, oven=(160, 190), minutes=(35, 60), base=(
        ("flour", 250, "g"), ("sugar", 200, "g"), ("butter", 150, "g"), ("eggs", 3, ""),
        ("milk", 100, "ml"), ("baking powder", 2, "tsp")), steps=(
        "Heat the oven to {oven}°C.",
        "Beat the butter with the sugar until pale.",
        "Whisk in the eggs one at a time.",
        "Fold in the flour, the milk and the baking powder.",
        "Stir in the {f}.",
        "Bake for {cook} min and cool before slicing.")),
    "muffins": dict(flavours=_SWEET, oven=(180, 200), minutes=(25, 40), base=(
        ("flour", 300, "g"), ("sugar", 150, "g"), ("oil", 80, "ml"), ("eggs", 2, ""),
        ("milk", 200, "ml"), ("baking powder", 3, "tsp")), steps=(
        "Heat the oven to {oven}°C and line a muffin tray.",
        "Mix the flour, the sugar and the baking powder.",
        "Whisk the eggs with the milk and the oil.",
        "Stir the wet mix into the dry mix, then add the {f}.",
        "Bake for {cook} min.")),
    "pie": dict(flavours=_SWEET + ("chicken", "leeks", "mushrooms"), oven=(180, 210),
                minutes=(45, 75), base=(
        ("flour", 250, "g"), ("butter", 125, "g"), ("water", 60, "ml"), ("eggs", 1, "")), steps=(
        "Rub the butter into the flour, add the water and chill the dough.",
        "Heat the oven to {oven}°C.",
        "Roll out the dough and line a dish.",
        "Fill with the {f} and cover with the rest of the dough.",
        "Brush with the egg and bake for {cook} min.")),
    "cookies": dict(flavours=("chocolate", "oats", "almonds", "coconut", "ginger", "lemons",
                              "cinnamon", "honey", "cherries"), oven=(170, 190), minutes=(20, 30),
                    base=(("flour", 200, "g"), ("butter", 100, "g"), ("sugar", 100, "g"),
                          ("eggs", 1, "")), steps=(
        "Heat the oven to {oven}°C.",
        "Cream the butter and the sugar, then beat in the egg.",
        "Mix in the flour and the {f}.",
        "Roll into balls on a tray.",
        "Bake for {cook} min and cool on a rack.")),
    "pancakes": dict(flavours=("bananas", "berries", "apples", "lemons", "honey", "chocolate",
                               "spinach", "cheese"), oven=None, minutes=(15, 25), base=(
        ("flour", 150, "g"), ("milk", 300, "ml"), ("eggs", 2, ""), ("butter", 20, "g")), steps=(
        "Whisk the flour, the eggs and the milk into a smooth batter.",
        "Rest the batter for 5 min.",
        "Melt a little butter in a pan.",
        "Cook a ladle of batter for 1 min on each side.",
        "Serve with the {f}.")),
    "soup": dict(flavours=_SAVOURY + ("carrots", "pumpkin"), oven=None, minutes=(25, 50), base=(
        ("onions", 1, ""), ("oil", 2, "tbsp"), ("stock", 800, "ml"), ("salt", 1, "tsp")), steps=(
        "Chop the onion and soften it in the oil.",
        "Add the {f} and cook for 5 min.",
        "Pour in the stock and simmer for {cook} min.",
        "Blend until smooth and season with the salt.")),
    "salad": dict(flavours=_SAVOURY + ("apples", "pears", "oranges"), oven=None,
                  minutes=(10, 20), base=(
        ("lettuces", 1, ""), ("oil", 3, "tbsp"), ("vinegar", 1, "tbsp"), ("salt", 1, "tsp")),
                  steps=(
        "Wash and dry the lettuce.",
        "Slice the {f}.",
        "Whisk the oil with the vinegar and the salt.",
        "Toss everything together and serve.")),
    "pasta": dict(flavours=_SAVOURY, oven=None, minutes=(15, 25), prep=5, base=(
        ("pasta", 400, "g"), ("oil", 2, "tbsp"), ("garlic", 2, "cloves"), ("cheese", 50, "g")),
                  steps=(
        "Boil the pasta in salted water for {cook} min.",
        "Fry the garlic in the oil.",
        "Add the {f} and cook until soft.",
        "Toss with the pasta and top with the cheese.")),
    "stew": dict(flavours=_SAVOURY, oven=(150, 170), minutes=(60, 120), base=(
        ("onions", 2, ""), ("carrots", 2, ""), ("stock", 600, "ml"), ("oil", 2, "tbsp")), steps=(
        "Heat the oven to {oven}°C.",
        "Brown the {f} in the oil.",
        "Add the onions and the carrots and cook for 5 min.",
        "Pour in the stock, cover and bake for {cook} min.")),
    "bread": dict(flavours=("cheese", "olives", "seeds", "onions", "honey", "oats", "tomatoes"),
                  oven=(200, 230), minutes=(100, 130), prep=70, base=(
        ("flour", 500, "g"), ("water", 320, "ml"), ("yeast", 7, "g"), ("salt", 1, "tsp")),
                  steps=(
        "Mix the flour, the yeast, the salt and the water.",
        "Knead for 10 min, then work in the {f}.",
        "Let the dough rise for 1 hour.",
        "Shape a loaf and heat the oven to {oven}°C.",
        "Bake for {cook} min until it sounds hollow.")),
    "curry": dict(flavours=("chickpeas", "lentils", "chicken", "spinach", "potatoes", "peas",
                            "pumpkin", "beans", "mushrooms"), oven=None, minutes=(30, 50), base=(
        ("onions", 1, ""), ("curry paste", 2, "tbsp"), ("coconut milk", 400, "ml"),
        ("rice", 300, "g")), steps=(
        "Soften the onion in a deep pan.",
        "Stir in the curry paste for 1 min.",
        "Add the {f} and the coconut milk.",
        "Simmer for {cook} min.",
        "Cook the rice and serve the curry on top.")),
    "omelette": dict(flavours=("cheese", "mushrooms", "spinach", "tomatoes", "peppers", "onions",
                               "potatoes"), oven=None, minutes=(5, 15), base=(
        ("eggs", 3, ""), ("butter", 10, "g"), ("salt", 1, "pinch")), steps=(
        "Beat the eggs with the salt.",
        "Melt the butter in a pan.",
        "Pour in the eggs and add the {f}.",
        "Fold over and serve.")),
    "smoothie": dict(flavours=("bananas", "berries", "mangoes", "oranges", "spinach", "apples",
                               "cherries"), oven=None, minutes=(5, 10), base=(
        ("yogurt", 200, "g"), ("milk", 200, "ml"), ("honey", 1, "tbsp")), steps=(
        "Put the {f}, the yogurt and the milk in a blender.",
        "Blend until smooth and sweeten with the honey.")),
}
# How much of the flavour per 4 servings, and its unit.
_FLAVOUR_AMOUNT = {"chocolate": (150, "g"), "honey": (3, "tbsp"), "cinnamon": (2, "tsp"),
                   "ginger": (2, "tsp"), "almonds": (100, "g"), "coconut": (80, "g"),
                   "oats": (100, "g"), "seeds": (50, "g"), "olives": (80, "g"),
                   "cheese": (150, "g"), "lentils": (200, "g"), "chickpeas": (400, "g"),
                   "beans": (400, "g"), "peas": (300, "g"), "chicken": (500, "g"),
                   "berries": (250, "g"), "cherries": (250, "g"), "mushrooms": (300, "g"),
                   "spinach": (200, "g"), "lemons": (2, ""), "oranges": (2, ""),
                   "potatoes": (4, ""), "tomatoes": (4, ""), "peppers": (2, ""),
                   "leeks": (2, ""), "courgettes": (2, ""), "onions": (2, ""),
                   "mangoes": (2, ""), "bananas": (3, ""), "apples": (3, ""), "pears": (3, ""),
                   "plums": (6, ""), "carrots": (4, ""), "pumpkin": (600, "g")}
_OCCASIONS = ("birthday", "picnic", "rainy day", "weekend", "holiday", "school lunch",
              "dinner party", "Sunday", "winter", "summer")
_ADJECTIVES = ("easy", "simple", "classic", "cosy", "light", "rich", "rustic", "golden")


def _title(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in s.split())


def _amount(base: float, unit: str, serves: int, rng: np.random.Generator) -> str:
    """A quantity scaled from 4 servings to ``serves``, with a little cook's freedom."""
    value = base * serves / 4 * rng.choice((0.8, 0.9, 1.0, 1.0, 1.1, 1.25))
    if unit in ("g", "ml"):  # weighed: rounded to 5 (small) or 25 (large)
        step = 25 if value >= 100 else 5
        value = max(5, int(round(value / step)) * step)
    else:  # counted: eggs, spoons, cloves
        value = max(1, int(round(value)))
    if unit == "cloves" and value == 1:
        unit = "clove"
    return f"{value} {unit}" if unit else str(value)


_SINGULAR = {"apples": "apple", "pears": "pear", "lemons": "lemon", "bananas": "banana",
             "berries": "berry", "carrots": "carrot", "oranges": "orange", "cherries": "cherry",
             "plums": "plum", "almonds": "almond", "mushrooms": "mushroom", "tomatoes": "tomato",
             "lentils": "lentil", "leeks": "leek", "peppers": "pepper", "beans": "bean",
             "potatoes": "potato", "onions": "onion", "peas": "pea", "courgettes": "courgette",
             "chickpeas": "chickpea", "olives": "olive", "mangoes": "mango", "oats": "oat",
             "seeds": "seed", "eggs": "egg", "lettuces": "lettuce"}


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _order(dish: str, flavour: str, serves: int, quick: bool, occasion: str | None,
           rng: np.random.Generator) -> str:
    """The guest's words: several phrasings of the same wish."""
    plural = dish.endswith("s")
    adj = _SINGULAR.get(flavour, flavour)  # "apple cake", not "apples cake"
    some = lambda w: "some" if plural else _a(w)  # noqa: E731
    style = str(rng.choice(_ADJECTIVES))
    choices = [f"Make {some(adj)} {adj} {dish}",
               f"I would like {some(dish)} {dish} with {flavour}",
               f"{dish[:1].upper() + dish[1:]} for {serves}, with {flavour}",
               f"Cook me {some(style)} {style} {dish} with {flavour}",
               f"What can I make with {flavour}? {'Some' if plural else _a(dish).title()} {dish}, please"]
    if quick:
        choices = [f"Something quick with {flavour}", f"{'Some' if plural else 'A'} quick {adj} {dish}, please",
                   f"Make {some(adj)} {adj} {dish}, quick"]
    if occasion:
        choices = [f"Make {some(occasion)} {occasion} {dish}" + (f" with {flavour}" if quick else ""),
                   f"{'Some' if plural else _a(adj).title()} {adj} {dish} for a {occasion}, please"]
        if quick:
            choices = [c + ", quick" for c in choices]
    return choices[int(rng.integers(len(choices)))]


def make_recipe(rng: np.random.Generator) -> str:
    """One order and its recipe, drawn from ``rng`` (no end token)."""
    dish = list(_DISHES)[int(rng.integers(len(_DISHES)))]
    spec = _DISHES[dish]
    flavour = spec["flavours"][int(rng.integers(len(spec["flavours"])))]
    serves = int(rng.choice((1, 2, 2, 4, 4, 4, 6, 6, 8, 10, 12)))
    lo, hi = spec["minutes"]
    quick = bool(rng.random() < 0.2)
    occasion = _OCCASIONS[int(rng.integers(len(_OCCASIONS)))] if rng.random() < 0.3 else None
    minutes = int(rng.integers(lo, hi + 1))
    if quick:
        minutes = max(5, min(minutes, 20))
    minutes = 5 * max(1, round(minutes / 5))
    oven = None if spec["oven"] is None else 10 * int(rng.integers(spec["oven"][0] // 10,
                                                                  spec["oven"][1] // 10 + 1))
    cook = max(5, minutes - spec.get("prep", 10))  # minutes in the oven or on the hob
    order = _order(dish, flavour, serves, quick, occasion, rng)
    if "quick" not in order:  # the recipe follows the order: "quick" only when asked for
        quick = False

    adj = _SINGULAR.get(flavour, flavour)
    name = " ".join(w for w in ("quick" if quick else "", occasion or "", adj, dish) if w)
    lines = [f"{ORDER_PREFIX}{order}", f"{RECIPE_PREFIX}{_title(name)}",
             f"Serves {serves}, ready in {minutes} min" + (f", oven {oven}°C" if oven else "")]
    amount, unit = _FLAVOUR_AMOUNT.get(flavour, (200, "g"))
    ingredients = [(n, b, u) for n, b, u in spec["base"] if n != flavour] + [(flavour, amount, unit)]
    lines.append("Ingredients:")
    for n, b, u in ingredients:
        qty = _amount(b, u, serves, rng)
        lines.append(f"- {qty} {_SINGULAR.get(n, n) if qty == '1' else n}")
    steps = list(spec["steps"])
    if quick:  # a quick recipe skips the optional resting and cooling steps
        steps = [s for s in steps if not s.startswith(("Rest", "Cool", "Let"))]
    lines.append("Steps:")
    for i, s in enumerate(steps, 1):
        lines.append(f"{i}. " + s.format(f=flavour, oven=oven, cook=cook))
    return "\n".join(lines) + "\n"


def make_corpus(n: int, *, seed: int = 0) -> list[str]:
    """``n`` recipes (order + recipe each, no end token), the same for the same seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    return [make_recipe(rng) for _ in range(n)]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The order book: train and validation recipes, as text and as one id stream each."""

    train_docs: tuple[str, ...]  # recipes the chef practises on
    val_docs: tuple[str, ...]  # guest tasters' recipes (drawn from another seed)
    tokenizer: CharTokenizer
    seed: int

    def ids(self, split: str) -> np.ndarray:
        """All recipes of ``split`` encoded, each followed by <end>: one int32 stream."""
        docs = {"train": self.train_docs, "val": self.val_docs}.get(split)
        if docs is None:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        end = np.array([self.tokenizer.end_id], np.int32)
        return np.concatenate([np.concatenate([self.tokenizer.encode(d), end]) for d in docs])

    def starts(self, split: str) -> np.ndarray:
        """Where each recipe of ``split`` begins in ``ids(split)``."""
        docs = self.train_docs if split == "train" else self.val_docs
        lengths = np.array([len(d) + 1 for d in docs])
        return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)

    @property
    def sha256(self) -> str:
        """Fingerprint of the whole corpus text (recorded in the weights' provenance)."""
        h = hashlib.sha256()
        for d in self.train_docs + ("\x00",) + self.val_docs:
            h.update(d.encode())
        return h.hexdigest()


def corpus(n_train: int = 20000, n_val: int = 1000, *, seed: int = 0) -> Corpus:
    """The recipe corpus: ``n_train`` + ``n_val`` recipes; validation uses seed ``seed + 1``."""
    return Corpus(tuple(make_corpus(n_train, seed=seed)), tuple(make_corpus(n_val, seed=seed + 1)),
                  CharTokenizer(), seed)

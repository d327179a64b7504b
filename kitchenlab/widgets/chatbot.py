"""The chatbot's pass (notebook 07): how boldly the chef improvises, and what it writes.

``temperature_panel(model)``: a temperature slider (0 ... 2) and a top-k slider (1 ... 77).
Each move shows the probability bars of the next character at a point where the recipe is
open (the flavour of a birthday cake: the order does not say) and the whole recipe the chef
then writes with that sampler and a fixed seed (up to ``max_new_tokens`` characters: the
greedy birthday cake needs about 420). Temperature 0 is greedy (the same text every time);
around 1 the chef is creative; towards 2 it gets silly.

The next-character logits are computed once when the panel opens; a slider move samples
``max_new_tokens`` characters with the compiled loop (temperature and k are traced values,
so no move recompiles) and redraws. Time a move as the browser test does:
``panel.render(temperature=0.8, top_k=77)``.
"""

from __future__ import annotations

import dataclasses
import html

import jax.numpy as jnp
import numpy as np

from kitchenlab import generate, text
from kitchenlab.plots import PALETTE
from kitchenlab.widgets import Panel, float_slider, int_slider

FIGSIZE = (7.6, 3.8)
N_BARS = 10  # most likely next characters drawn
TEXT_LINES = 24  # lines of the written recipe shown (the greedy birthday cake has 18)
TEXT_WIDTH = 64  # characters per shown line


def show_char(c: str) -> str:
    """A character as a label: spaces and newlines made visible."""
    return {" ": "␣", "\n": "⏎", text.END: "<end>", text.PAD: "<pad>"}.get(c, c)


def shown_lines(written: str, ended: bool) -> list[str]:
    """The recipe as drawn: at most TEXT_LINES lines of TEXT_WIDTH characters; a cut is
    marked with "…", so a learner never mistakes it for where the chef stopped."""
    lines = written.splitlines() or [""]
    cut = len(lines) > TEXT_LINES
    lines = lines[:TEXT_LINES - 1] + ["…"] if cut else lines
    shown = [line if len(line) <= TEXT_WIDTH else line[:TEXT_WIDTH - 1] + "…" for line in lines]
    if not ended and not cut:
        shown[-1] += " …"  # the budget ran out mid-recipe
    return shown


@dataclasses.dataclass(frozen=True)
class Tasting:
    """What one slider position produced."""

    temperature: float
    top_k: int
    labels: tuple[str, ...]  # the N_BARS most likely next characters (before sampling rules)
    probs: np.ndarray  # their probability under this temperature / top-k
    prefix: str  # text the bars continue
    recipe: str  # what the chef wrote from the prefix on
    ended: bool  # the recipe reached <end>
    n_tokens: int

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def temperature_panel(model, order: str = "Make a birthday cake", prefix: str = "Birthday ", *,
                      max_new_tokens: int = 448, buffer: int | None = None,
                      seed: int = 0) -> Panel:
    """Temperature and top-k sliders -> next-character bars and the recipe written.

    ``buffer`` is passed to ``kl.generate.generate`` (the same buffer as other calls shares
    their compiled programs).
    """
    prompt = text.prompt(order) + prefix
    tokenizer = text.CharTokenizer()
    step, params = generate._check_model(model)
    ids, start = generate.encode_prompts(prompt)
    size = ids.shape[1] + generate._buffer(ids.shape[1], max_new_tokens, step.config.context,
                                           buffer)
    logits = generate.prefill(step, params, jnp.asarray(ids), jnp.asarray(start),
                              size=size)[0]  # (1, V): the bars' logits, computed once
    order_of = np.argsort(-np.asarray(logits[0]), kind="stable")[:N_BARS]
    tokens = tokenizer.tokens()

    def compute(temperature: float = 0.0, top_k: int = tokenizer.vocab_size) -> Tasting:
        sampler = generate.TopK(int(top_k), float(temperature))
        probs = np.asarray(sampler.probs(logits))[0]
        served = generate.generate((step, params), prompt, max_new_tokens=max_new_tokens,
                                   sampler=sampler, seed=seed, buffer=buffer)
        return Tasting(float(temperature), int(top_k), tuple(tokens[i] for i in order_of),
                       probs[order_of], prefix, served.text, bool(served.ended[0]),
                       int(served.counts[0]))

    def draw(r: Tasting, fig):
        fig.set_layout_engine("none")  # hand-placed axes: no layout engine (speed)
        ax = fig.add_axes((0.07, 0.13, 0.22, 0.72))
        y = np.arange(len(r.labels))
        ax.barh(y, r.probs, color=PALETTE["train"])
        ax.set_yticks(y, [show_char(c) for c in r.labels], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
        ax.set_title(f"next after '{r.prefix.strip()}'", fontsize=9)
        mode = "greedy" if r.greedy else f"T = {r.temperature:.1f}, top-k {r.top_k}"
        box = fig.add_axes((0.34, 0.02, 0.65, 0.92))
        box.axis("off")
        box.text(0, 1, "\n".join(shown_lines(r.prefix + r.recipe, r.ended)), va="top",
                 ha="left", family="monospace", fontsize=8, transform=box.transAxes)
        end = "<end>" if r.ended else f"no <end> within {r.n_tokens} characters"
        box.set_title(f"the chef writes ({mode}; {end})", fontsize=9, loc="left")

    def readout(r: Tasting) -> str:
        mode = "greedy: the same recipe every time" if r.greedy else "sampling (seed fixed)"
        end = "finished" if r.ended else "not finished"
        color = PALETTE["val"] if r.temperature >= 1.5 else PALETTE["test"]
        return (f'<b style="color:{color}">temperature {r.temperature:.2f}</b>, top-k {r.top_k}'
                f" — {mode}; {r.n_tokens} characters, {end}; first line: "
                f"<code>{html.escape((r.prefix + r.recipe).splitlines()[0][:40])}</code>")

    controls = {"temperature": float_slider("temperature", 0.0, 0.0, 2.0, 0.1),
                "top_k": int_slider("top-k", tokenizer.vocab_size, 1, tokenizer.vocab_size)}
    return Panel(compute, draw, readout, controls, figsize=FIGSIZE, css_class="kl-temperature")

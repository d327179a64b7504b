"""Frosting while it bakes (notebook 08): speculative decoding against plain decoding.

The shipped target chef (4 blocks, width 192) writes exactly 256 tokens after one order,
batch 1, no early stop; medians of rounds in which plain and speculative decoding alternate,
compilation excluded. The baseline is the fastest plain decoder in the package: the whole
KV-cached greedy loop in one jit (``kl.generate.decode_loop``, ``gen.target_tokens_per_s``).

  spec.speedup_greedy        plain greedy time / speculative greedy time, draft = the n-gram
                             commis, k = spec.k (goal >= 1.4)
  spec.identical_greedy      the speculative text equals the plain greedy text (true)
  spec.acceptance            alpha: drafted tokens the target kept
  spec.tokens_per_call       tokens written per target pass
  spec.k, spec.draft         the draft length and the draft used
  spec.cost_ratio_c          a commis guess / a one-token target step
  spec.predicted_speedup     (1 - a^(k+1)) / ((1 - a)(k c + v)) from the measured a, c, v
  spec.speedup_sampling      the same at temperature 1 against plain sampling at temperature 1
  spec.chef_speedup_greedy   the draft chef (a 1-block GPT) instead of the commis
  spec.verify_cost_k4        v(5): a 5-token pass through the target's cache / a 1-token pass
  spec.oracle_ceiling_k4     a perfect, free draft (it reads the greedy answer), k = 4: the
                             most any draft could give this target on this machine
  spec.memory_bound_verify_cost_k4, spec.memory_bound_oracle_k4
                             the same for a 6-block, width-512 target with random knobs
                             (16.9 M knobs, 67 MB: its one-token step reads more than the
                             CPU's caches hold, so extra tokens per pass are nearly free;
                             goal >= 2.0)
  spec.cores                 CPU cores the measurement ran on

Measured in a fresh Python process pinned to one core before JAX starts, as bench_gen does.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from timing import in_pinned_child, ratio

N_TOKENS = 256
K = 4
ROUNDS = 7  # alternating plain / speculative rounds
ORDER = "Make a birthday cake"
COMMIS = "n-gram commis (contexts of 1-15 characters, counted from 2000 corpus recipes)"


def _log(msg: str) -> None:
    print(f"[bench] spec: {msg}", file=sys.stderr, flush=True)


def measure() -> dict:
    """All keys, measured in a child process pinned to one core (see the module notes)."""
    return in_pinned_child(__file__, _measure, "spec.cores")


def _calls(target, draft, prompt: str, *, k: int, temperature: float = 0.0):
    """(plain, speculative): two zero-argument calls that serve N_TOKENS and block."""
    import jax
    import jax.numpy as jnp

    import kitchenlab as kl

    step, params = target
    ids, start = kl.generate.encode_prompts(prompt)
    sampler = kl.generate.Greedy() if temperature == 0 else kl.generate.Temperature(temperature)
    plain_args = (step, params, jnp.asarray(ids), jnp.asarray(start), jnp.int32(N_TOKENS),
                  jnp.int32(-1), sampler, jax.random.key(0))
    plain_kw = dict(max_new=N_TOKENS, use_cache=True, window=kl.generate.WINDOW)
    args, kw = kl.speculative.prepare(target, draft, prompt, k=k, max_new_tokens=N_TOKENS,
                                      temperature=temperature, stop_at_end=False)

    def plain():
        return jax.block_until_ready(kl.generate.decode_loop(*plain_args, **plain_kw))

    def spec():
        return jax.block_until_ready(kl.speculative.speculative_loop(*args, **kw))

    return plain, spec


def race(target, draft, prompt: str, *, k: int = K, temperature: float = 0.0,
         rounds: int = ROUNDS) -> dict:
    """Plain and speculative decoding alternating in rounds: medians, ratio, counts, texts."""
    plain, spec = _calls(target, draft, prompt, k=k, temperature=temperature)
    plain_out, spec_out = plain(), spec()  # compile (excluded)
    plain_t, spec_t = [], []
    for _ in range(rounds):
        for fn, times in ((plain, plain_t), (spec, spec_t), (spec, spec_t), (plain, plain_t)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    tokens, _, count, counts = spec_out
    plain_s, spec_s = statistics.median(plain_t), statistics.median(spec_t)
    return {"plain_s": plain_s, "spec_s": spec_s, "speedup": plain_s / spec_s,
            "identical": bool((plain_out[0][0, :N_TOKENS] == tokens[:N_TOKENS]).all()),
            "alpha": int(counts.accepted) / max(int(counts.drafted), 1),
            "tokens_per_call": int(count) / max(int(counts.rounds), 1),
            "greedy": plain_out[0][0, :N_TOKENS]}


def _measure() -> dict:
    import numpy as np

    import kitchenlab as kl

    target = kl.models.split_gpt(kl.pretrain.load("target"))
    chef = kl.models.split_gpt(kl.pretrain.load("draft"))
    commis = kl.drafts.build_commis(kl.text.make_corpus(2000, seed=0))
    prompt = kl.text.prompt(ORDER)
    ids, _ = kl.generate.encode_prompts(prompt)

    greedy = race(target, commis, prompt)
    _log(f"commis, k = {K}: plain {N_TOKENS / greedy['plain_s']:,.0f} tok/s, speculative "
         f"{N_TOKENS / greedy['spec_s']:,.0f} tok/s ({greedy['speedup']:.2f}x), alpha "
         f"{greedy['alpha']:.2f}, {greedy['tokens_per_call']:.2f} tokens per target pass")
    sampling = race(target, commis, prompt, temperature=1.0)
    _log(f"temperature 1: {sampling['speedup']:.2f}x, alpha {sampling['alpha']:.2f}")
    with_chef = race(target, chef, prompt)
    _log(f"draft chef: {with_chef['speedup']:.2f}x, alpha {with_chef['alpha']:.2f}")
    perfect = kl.drafts.perfect_draft(np.concatenate([ids[0], np.asarray(greedy["greedy"])]))
    oracle = race(target, perfect, prompt)
    _log(f"perfect draft: {oracle['speedup']:.2f}x")

    one = kl.speculative.pass_seconds(target, 1)
    v5 = kl.speculative.pass_seconds(target, K + 1) / one
    c = kl.speculative.pass_seconds(commis, 1) / one
    predicted = kl.speculative.predicted_speedup(greedy["alpha"], K, c, v5)
    _log(f"v(5) = {v5:.2f}, c = {c:.3f}: predicted {predicted:.2f}x")

    big = kl.experiments.frosting.memory_bound_target()
    big_one = kl.speculative.pass_seconds(big, 1, n=30)
    big_v5 = kl.speculative.pass_seconds(big, K + 1, n=30) / big_one
    big_greedy = kl.generate.generate(big, prompt, max_new_tokens=N_TOKENS, stop_at_end=False)
    big_perfect = kl.drafts.perfect_draft(np.concatenate([ids[0], big_greedy.tokens[0]]))
    big_oracle = race(big, big_perfect, prompt, rounds=3)
    _log(f"6 blocks, width 512 (random knobs): one token {big_one * 1e3:.2f} ms, v(5) = "
         f"{big_v5:.2f}, perfect draft {big_oracle['speedup']:.2f}x "
         f"({N_TOKENS / big_oracle['plain_s']:,.0f} -> {N_TOKENS / big_oracle['spec_s']:,.0f} tok/s)")
    return {
        "spec.speedup_greedy": ratio(greedy["plain_s"], greedy["spec_s"], 2),
        "spec.identical_greedy": greedy["identical"],
        "spec.acceptance": round(greedy["alpha"], 3),
        "spec.tokens_per_call": round(greedy["tokens_per_call"], 2),
        "spec.k": K,
        "spec.draft": COMMIS,
        "spec.cost_ratio_c": round(c, 3),
        "spec.predicted_speedup": round(predicted, 2),
        "spec.speedup_sampling": ratio(sampling["plain_s"], sampling["spec_s"], 2),
        "spec.chef_speedup_greedy": ratio(with_chef["plain_s"], with_chef["spec_s"], 2),
        "spec.verify_cost_k4": round(v5, 2),
        "spec.oracle_ceiling_k4": ratio(oracle["plain_s"], oracle["spec_s"], 2),
        "spec.memory_bound_verify_cost_k4": round(big_v5, 2),
        "spec.memory_bound_oracle_k4": ratio(big_oracle["plain_s"], big_oracle["spec_s"], 2),
    }


if __name__ == "__main__":
    print(json.dumps(_measure()) if "--child" in sys.argv else measure())

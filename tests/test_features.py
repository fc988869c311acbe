"""features: token-budget batch plans, padding, truncation flags, and the one backbone pass."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from headtune.config import FeatureConfig
from headtune.features import collate, length_order, plan_batches, plan_shard, shard_order, tokenize
from conftest import Backbone

MAX_LENGTH = 48

TEXTS = [
    "a short one",
    "the movie was great and the music was wonderful , a real masterpiece of a film " * 4,  # truncated
    "dull",
    "the plot was a mess and the actor was dreadful with a boring script and a very dull ending",
    "excellent",
    "quite a moving story",
    "the camera and the director really made this scene brilliant",
    "awful awful awful",
    "the film",
    "the story was superb , with delightful characters",
]


# --------------------------------------------------------------------------- plan_batches

def check_plan(sorted_lengths: np.ndarray, budget: int, plan: list[tuple[int, int]]) -> None:
    n = len(sorted_lengths)
    covered = [i for a, b in plan for i in range(a, b)]
    assert covered == list(range(n))  # every index once, in order, no empty batch
    for a, b in plan:
        assert b > a
        rows, first = b - a, int(sorted_lengths[a])
        assert rows * first <= budget or rows == 1
        if b < n:  # filled: one more row would have broken the budget
            assert (rows + 1) * max(first, 1) > budget


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=600), max_size=60), st.integers(min_value=1, max_value=5000))
def test_plan_batches_respects_budget_and_covers_all(lengths, budget):
    sorted_lengths = np.sort(np.array(lengths, dtype=np.int64))[::-1].copy()
    before = sorted_lengths.copy()
    plan = plan_batches(sorted_lengths, budget)
    assert np.array_equal(sorted_lengths, before)  # pure: input untouched
    assert plan_batches(sorted_lengths, budget) == plan  # pure: same input, same plan
    check_plan(sorted_lengths, budget, plan)


def test_plan_batches_examples():
    assert plan_batches(np.array([10, 10, 5, 5, 5, 1]), 20) == [(0, 2), (2, 6)]
    assert plan_batches(np.array([50, 3, 2]), 20) == [(0, 1), (1, 3)]  # over budget: a batch of its own
    assert plan_batches(np.array([], dtype=np.int64), 20) == []


def test_plan_batches_with_rounded_widths_repeats_shapes():
    # widths round up to 32: 40 -> 64 (2 rows of 128 tokens), then 30..5 -> 32 (4 rows)
    assert plan_batches(np.array([40, 33, 30, 20, 17, 5]), 128, multiple=32) == [(0, 2), (2, 6)]
    lengths = np.array([31, 30, 20, 19, 18, 17, 16, 3, 2])  # all round to 32: rows 4 every time
    plan = plan_batches(lengths, 128, multiple=32)
    assert plan == [(0, 4), (4, 8), (8, 9)]
    assert {b - a for a, b in plan[:-1]} == {4}  # every full batch has one shape (4, 32)
    assert plan_batches(lengths, 128) != plan  # exact widths: rows follow each batch's longest text


def test_length_order_is_longest_first_and_stable():
    assert length_order(np.array([3, 7, 3, 9, 7])).tolist() == [3, 1, 4, 0, 2]


# --------------------------------------------------------------------------- collate

def test_collate_pads_right_with_exact_mask():
    ids, mask = collate([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.dtype == mask.dtype == torch.long
    assert torch.equal(ids, torch.tensor([[5, 6, 7], [8, 0, 0], [9, 10, 0]]))
    assert torch.equal(mask, torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]]))
    ids, mask = collate([[4, 4]], pad_id=3)
    assert torch.equal(ids, torch.tensor([[4, 4]])) and torch.equal(mask, torch.ones(1, 2, dtype=torch.long))
    ids, _ = collate([[1], [2, 2, 2]], pad_id=99)
    assert ids[0].tolist() == [1, 99, 99]


def test_collate_rounds_the_width_up_to_a_multiple():
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0, multiple=4)
    assert torch.equal(ids, torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]]))
    assert torch.equal(mask, torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]))
    assert collate([[1, 2, 3, 4]], pad_id=0, multiple=4)[0].shape == (1, 4)  # already a multiple: no extra column


# --------------------------------------------------------------------------- tokenize

def test_tokenize_flags_exactly_the_texts_that_were_cut(tokenizer):
    n = 12
    exact = " ".join(["the"] * (n - 2))  # [CLS] + 10 x 'the' + [SEP] = 12 ids, nothing cut
    longer = exact + " the"
    tok = tokenize(tokenizer, [exact, longer, "great", longer + " film"], max_length=n)
    assert [len(x) for x in tok.ids] == [n, n, 3, n]
    assert tok.truncated.dtype == bool
    assert tok.truncated.tolist() == [False, True, False, True]
    assert tok.ids[0] == tok.ids[1]  # the cut text keeps its first tokens, ending in [SEP]
    assert tok.ids[0][0] == tokenizer.cls_token_id and tok.ids[0][-1] == tokenizer.sep_token_id


def test_tokenize_cuts_the_side_the_tokenizer_is_set_to(tokenizer):
    left = copy.deepcopy(tokenizer)  # the session's tokenizer stays as loaded
    left.truncation_side = "left"
    n, texts = 6, ["one two three four five six seven", "great film"]
    cut, kept = tokenize(left, texts, max_length=n), tokenize(tokenizer, texts, max_length=n)
    whole = tokenizer(texts[0])["input_ids"]  # [CLS] one ... seven [SEP]
    assert cut.ids[0] == [tokenizer.cls_token_id, *whole[-(n - 1):]]  # the last 4 words
    assert kept.ids[0] == [*whole[:n - 1], tokenizer.sep_token_id]  # the first 4 words
    assert cut.ids[1] == kept.ids[1] == tokenizer(texts[1])["input_ids"]
    assert cut.truncated.tolist() == kept.truncated.tolist() == [True, False]


class _Spy:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, inner):
        self.inner, self.longest = inner, 0
        self.truncation_side = inner.truncation_side

    def __call__(self, texts, **kwargs):
        self.longest = max(self.longest, *map(len, texts))
        return self.inner(texts, **kwargs)


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_huge_text_is_read_only_as_far_as_its_kept_tokens_need(tokenizer, side):
    """A 30 MB line took GBs and tens of seconds to tokenize for 16 tokens: the tokenizer now sees at most
    CHARS_PER_TOKEN x max_length characters of the kept end, with the same tokens as the whole text gives."""
    from headtune.features import CHARS_PER_TOKEN

    sided = copy.deepcopy(tokenizer)
    sided.truncation_side = side
    huge = "a great film " + "and a very good plot " * 2_000 + "but a dull ending"
    spy = _Spy(sided)
    tok = tokenize(spy, [huge, "great"], max_length=16)
    assert spy.longest == 16 * CHARS_PER_TOKEN < len(huge)
    assert tok.ids[0] == sided(huge, truncation=True, max_length=16)["input_ids"]
    assert tok.ids[1] == sided("great")["input_ids"]
    assert tok.truncated.tolist() == [True, False]


class _NoEncodings:
    """A tokenizer without the fast tokenizers' `encodings` (as slow / Python-backend tokenizers are)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, texts, **kwargs):
        return {"input_ids": self.inner(texts, **kwargs)["input_ids"]}


def test_tokenize_flags_are_exact_without_fast_encodings(tokenizer):
    n = 12
    exact = " ".join(["the"] * (n - 2))
    tok = tokenize(_NoEncodings(tokenizer), [exact, exact + " the", "great"], max_length=n)
    assert [len(x) for x in tok.ids] == [n, n, 3]
    assert tok.truncated.tolist() == [False, True, False]


# --------------------------------------------------------------------------- the backbone pass

@pytest.fixture(scope="module")
def distilbert(tiny_models):
    return Backbone(tiny_models["distilbert"], max_length=MAX_LENGTH)


def _extract(loaded, texts, **cfg):
    cfg.setdefault("no_cache", True)
    return loaded.extract(texts, **cfg)


def test_budget_batching_returns_features_in_original_order(distilbert):
    features, stats = _extract(distilbert, TEXTS, max_tokens_per_batch=64, shard_size=4)
    one_by_one = torch.cat([_extract(distilbert, [t])[0] for t in TEXTS])
    assert features.shape == (len(TEXTS), 32) and features.dtype == torch.float32
    assert torch.allclose(features, one_by_one, atol=1e-5, rtol=0)
    # rows really differ, so a mix-up of the order could not pass unnoticed
    assert min(torch.dist(features[i], features[j]) for i in range(len(TEXTS)) for j in range(i)) > 1e-4

    tok = tokenize(distilbert.tokenizer, TEXTS, MAX_LENGTH)
    lengths = np.array([len(x) for x in tok.ids])
    assert stats.texts == len(TEXTS)
    assert stats.real_tokens == sum(lengths)
    assert stats.truncated == 1 == int(tok.truncated.sum())
    assert stats.computed_shards == math.ceil(len(TEXTS) / 4) and stats.cached_shards == 0
    # shards of 4 in character order, each batched by token length within the budget: padding is what each
    # batch's longest row adds
    order = shard_order(TEXTS)
    expected_padded = 0
    for s in range(0, len(TEXTS), 4):
        shard = lengths[order[s:s + 4]]
        expected_padded += sum(len(batch) * int(shard[batch].max()) for batch in plan_shard(shard, 64))
    assert stats.padded_tokens == expected_padded


def test_collate_never_pads_past_the_cap():
    """--pad-to-multiple-of above --max-length padded batches past the model's positions: an internal error."""
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0, multiple=1000, cap=5)
    assert ids.shape == (2, 5) and mask.sum().item() == 4
    assert collate([[1, 2, 3, 4]], pad_id=0, multiple=3, cap=5)[0].shape == (1, 5)  # 6 would pass the cap
    assert collate([[1, 2, 3, 4, 5]], pad_id=0, multiple=4, cap=5)[0].shape == (1, 5)  # never below the longest


def test_a_multiple_above_max_length_pads_to_max_length(distilbert):
    exact, _ = _extract(distilbert, TEXTS, max_tokens_per_batch=64, shard_size=4)
    capped, stats = _extract(distilbert, TEXTS, max_tokens_per_batch=10_000, shard_size=4, pad_to_multiple_of=1000)
    assert torch.allclose(capped, exact, atol=1e-5, rtol=0)
    assert stats.padded_tokens == len(TEXTS) * MAX_LENGTH  # every batch padded to --max-length, not to 1,000


def test_rounded_widths_change_padding_not_features(distilbert):
    exact, exact_stats = _extract(distilbert, TEXTS, max_tokens_per_batch=64, shard_size=4)
    rounded, stats = _extract(distilbert, TEXTS, max_tokens_per_batch=64, shard_size=4, pad_to_multiple_of=8)
    assert torch.allclose(rounded, exact, atol=1e-5, rtol=0)
    assert stats.real_tokens == exact_stats.real_tokens
    tok = tokenize(distilbert.tokenizer, TEXTS, MAX_LENGTH)
    lengths = np.array([len(x) for x in tok.ids])
    order = shard_order(TEXTS)
    expected = 0
    for s in range(0, len(TEXTS), 4):
        shard = lengths[order[s:s + 4]]
        expected += sum(len(b) * -(-int(shard[b].max()) // 8) * 8 for b in plan_shard(shard, 64, multiple=8))
    assert stats.padded_tokens == expected > exact_stats.padded_tokens


def test_batching_defaults_depend_on_the_device():
    unset = FeatureConfig()
    assert (unset.max_tokens_per_batch, unset.shard_size, unset.pad_to_multiple_of) == (None, None, None)
    cpu, cuda = unset.for_device("cpu"), unset.for_device("cuda")
    assert (cpu.max_tokens_per_batch, cpu.shard_size, cpu.pad_to_multiple_of) == (4096, 512, 1)
    assert (cuda.max_tokens_per_batch, cuda.shard_size, cuda.pad_to_multiple_of) == (65536, 8192, 32)
    mine = FeatureConfig(max_tokens_per_batch=100, shard_size=7, pad_to_multiple_of=8).for_device("cuda")
    assert (mine.max_tokens_per_batch, mine.shard_size, mine.pad_to_multiple_of) == (100, 7, 8)  # set: kept


def test_budget_size_does_not_change_features(distilbert):
    small, _ = _extract(distilbert, TEXTS, max_tokens_per_batch=1)  # every text alone
    large, _ = _extract(distilbert, TEXTS, max_tokens_per_batch=100_000, shard_size=100)  # one batch
    assert torch.allclose(small, large, atol=1e-5, rtol=0)


def test_shards_are_cut_in_character_order_and_batched_by_token_length():
    texts = ["bb", "a", "dddd", "ccc", "eeeee", "a"]
    assert shard_order(texts).tolist() == [4, 2, 3, 0, 1, 5]  # longest first, ties in their original order
    lengths = np.array([3, 9, 4, 9, 1])
    batches = plan_shard(lengths, max_tokens=18)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0, 4]]  # exact token lengths decide within a shard

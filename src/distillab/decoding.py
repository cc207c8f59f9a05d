"""Sampling and stopping for the transformers backend, cheap on large vocabularies.

transformers' own ``TopPLogitsWarper`` sorts the whole vocabulary at every step, and
``StopStringCriteria`` builds a table over the whole vocabulary when it is created. For
Gemma-3's 262k-token vocabulary on CPU that was 35 s and 14 s of a 132 s generate job
(measured with cProfile on a demo shard). These two do the same job for a fraction:

* ``SamplingWarper``: temperature → top-k → top-p → min-p, the order transformers and
  vLLM apply them. Top-p looks at the ``candidates`` most likely tokens first (a
  ``topk``, not a sort) and falls back to a full sort only for a row whose nucleus is
  wider than that. It keeps the same tokens as ``TopPLogitsWarper``: the smallest
  most-likely set whose probability reaches ``top_p`` (ties at the edge are kept).
* ``StopOnText``: stops a row once one of the stop strings appears in the decoded tail
  of what it generated (never in the prompt, whose demonstrations hold ``</answer>``).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, StoppingCriteria


class SamplingWarper(LogitsProcessor):
    def __init__(self, temperature: float, top_k: int = 0, top_p: float = 1.0,
                 min_p: float = 0.0, candidates: int = 1024):
        if temperature <= 0:
            raise ValueError("SamplingWarper is for sampling: temperature must be > 0")
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.min_p = min_p
        self.candidates = candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            scores = self._top_p(scores)
        if self.min_p > 0:
            probs = scores.softmax(dim=-1)
            floor = self.min_p * probs.max(dim=-1, keepdim=True).values
            scores = scores.masked_fill(probs < floor, float("-inf"))
        return scores

    def _top_p(self, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.candidates, scores.shape[-1])
        values = torch.topk(scores, k, dim=-1).values  # descending
        probs = (values - scores.logsumexp(dim=-1, keepdim=True)).exp()
        before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
        # Token j is kept while the tokens before it hold less than top_p.
        keep = (before < self.top_p).sum(dim=-1)
        edges = values.gather(-1, (keep - 1).unsqueeze(-1))
        wide = keep == k  # the nucleus may reach past the candidates: sort those rows
        if wide.any():
            full = torch.sort(scores[wide], dim=-1, descending=True).values
            fprobs = full.softmax(dim=-1)
            fkeep = ((fprobs.cumsum(dim=-1) - fprobs) < self.top_p).sum(dim=-1)
            edges[wide] = full.gather(-1, (fkeep - 1).unsqueeze(-1))
        return scores.masked_fill(scores < edges, float("-inf"))


class StopOnText(StoppingCriteria):
    def __init__(self, tokenizer, stop: list[str], prompt_width: int, tail_tokens: int = 24):
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_width = prompt_width
        self.tail_tokens = tail_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor,
                 **kwargs) -> torch.BoolTensor:
        tails = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.tail_tokens):]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts],
                            dtype=torch.bool, device=input_ids.device)

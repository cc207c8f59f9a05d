"""The cheap sampling warper and stop criterion against transformers' own."""

import pytest

torch = pytest.importorskip("torch")
from transformers import (LogitsProcessorList, MinPLogitsWarper,  # noqa: E402
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from distillab.decoding import SamplingWarper, StopOnText  # noqa: E402


def _reference(scores, temperature, top_k, top_p, min_p):
    chain = [TemperatureLogitsWarper(temperature)]
    if top_k:
        chain.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    if min_p:
        chain.append(MinPLogitsWarper(min_p))
    return LogitsProcessorList(chain)(None, scores.clone())


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", [
    (0.6, 0, 0.95, 0.0),   # the paper's sampling
    (1.0, 0, 0.5, 0.0),
    (0.7, 20, 0.8, 0.0),
    (0.6, 0, 0.95, 0.05),
    (1.3, 0, 1.0, 0.1),    # min-p alone
])
def test_sampling_warper_keeps_the_same_tokens_as_transformers(temperature, top_k, top_p, min_p):
    g = torch.Generator().manual_seed(0)
    peaked = torch.randn(6, 5000, generator=g) * 4      # narrow nuclei: the topk path
    flat = torch.randn(3, 5000, generator=g) * 0.01     # nuclei wider than the candidates
    scores = torch.cat([peaked, flat])
    ours = SamplingWarper(temperature, top_k, top_p, min_p, candidates=64)(None, scores.clone())
    ref = _reference(scores, temperature, top_k, top_p, min_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    kept = ~torch.isinf(ours)
    assert torch.allclose(ours[kept], ref[kept])
    if top_p < 1.0 and not top_k:
        assert kept[6:].sum(dim=-1).min() > 64  # the fallback path really ran


def test_sampling_warper_rejects_greedy():
    with pytest.raises(ValueError, match="temperature"):
        SamplingWarper(0.0)


class _CharTokenizer:
    """Token i is the character chr(i)."""

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(chr(int(t)) for t in row) for row in rows]


def _ids(texts):
    return torch.tensor([[ord(c) for c in t] for t in texts])


def test_stop_on_text_looks_only_at_generated_tokens():
    prompt = "demo </answer> Q:"  # the demonstrations in a prompt hold the stop string
    stop = StopOnText(_CharTokenizer(), ["</answer>"], prompt_width=len(prompt), tail_tokens=12)
    done = stop(_ids([prompt + " 7 </answer>", prompt + " thinking..."]), None)
    assert done.tolist() == [True, False]
    assert stop(_ids([prompt, prompt]), None).tolist() == [False, False]

"""The PyTorch span decoder against a naive, span-by-span reference."""

import dataclasses
import math

import numpy
import pytest
import torch
from torch.nn import functional as F

from spacy_spandec.candidates import attention_blocks, enumerate_candidates, max_window_length
from spacy_spandec.layers.attention import AttentionBudget
from spacy_spandec.layers.decoder import (
    MLP_IN,
    PARAMETER_PREFIX,
    PER_SPAN_LINEARS,
    AbsoluteSpanDecoder,
    RelativeSpanDecoder,
    SpanDecNet,
    mlp_width,
)
from spacy_spandec.layers.span_filter import SpanFilter, spans_to_keep

WIDTH, N_HEADS, N_CLASSES = 16, 4, 5
MAX_LEN, BLOCK_SIZE, CONTEXT = 4, 16, 8
# Short docs, an empty doc, a one-token doc and a 300-token doc (19 blocks).
LENGTHS = [5, 0, 1, 37, 300]


def make_inputs(lengths, max_len=MAX_LEN, block_size=BLOCK_SIZE, context=CONTEXT, seed=0):
    """The decoder's inputs, built from candidates.py as the Thinc model does."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(sum(lengths), WIDTH, generator=gen)
    cands = enumerate_candidates(lengths, max_len)
    blocks = attention_blocks(lengths, max_len, block_size, context)
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64")
    as_tensor = lambda a: torch.as_tensor(numpy.asarray(a, dtype="int64"))  # noqa: E731
    return {
        "tokens": tokens,
        "starts": as_tensor(offsets[cands.doc_ids] + cands.starts),
        "ends": as_tensor(offsets[cands.doc_ids] + cands.ends - 1),
        "span_blocks": as_tensor(blocks.block_of(cands, block_size)),
        "window_starts": as_tensor(offsets[blocks.doc_ids] + blocks.window_starts),
        "window_lengths": as_tensor(blocks.window_lengths),
    }


@pytest.fixture(params=["relative", "absolute"], autouse=True)
def scheme(request):
    """Every decoder test runs on both position schemes (v2 and v1)."""
    return request.param


def make_decoder(
    seed=0, max_len=MAX_LEN, block_size=BLOCK_SIZE, context=CONTEXT, scheme="relative", budget=None
):
    torch.manual_seed(seed)
    n_positions = max_window_length(max_len, block_size, context)
    if scheme == "relative":
        dec = RelativeSpanDecoder(
            WIDTH,
            N_CLASSES,
            N_HEADS,
            mlp_ratio=2.0,
            dropout=0.1,
            n_positions=n_positions,
            max_span_length=max_len,
            budget=budget,
        )
        with torch.no_grad():
            # A bias that is not symmetric in the offset, nor shared by the markers.
            dec.relative_bias.normal_(0.0, 1.0)
    else:
        dec = AbsoluteSpanDecoder(
            WIDTH,
            N_CLASSES,
            N_HEADS,
            mlp_ratio=2.0,
            dropout=0.1,
            n_positions=n_positions,
            position_init="sinusoidal",
            position_key_scale=1.0,
            budget=budget,
        )
    # Non-trivial LayerNorm affine parameters, so a mix-up between the three
    # norms cannot go unnoticed.
    with torch.no_grad():
        for norm in (dec.norm_query, dec.norm_text, dec.norm_mlp):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return dec.eval()


def reference_logits(dec, inputs) -> torch.Tensor:
    if isinstance(dec, RelativeSpanDecoder):
        return relative_reference_logits(dec, inputs)
    return absolute_reference_logits(dec, inputs)


def relative_reference_logits(dec: RelativeSpanDecoder, inputs) -> torch.Tensor:
    """One span at a time: queries [W_q LN(m_start), W_q LN(m_end)]; keys and
    values the (normed) markers themselves, then the (normed) window tokens;
    each score plus relative_bias[marker, head, key token - boundary token];
    after attention the residual gains width_embed[marker, width - 1]."""
    tokens = inputs["tokens"]
    h, d = dec.n_heads, dec.width
    hw = d // h
    center = dec.n_positions - 1
    rows = []
    for s, e, b in zip(
        inputs["starts"].tolist(), inputs["ends"].tolist(), inputs["span_blocks"].tolist()
    ):
        ws = int(inputs["window_starts"][b])
        wl = int(inputs["window_lengths"][b])
        assert ws <= s <= e < ws + wl
        q_in = torch.stack([dec.m_start, dec.m_end])
        q_normed = F.layer_norm(q_in, (d,), dec.norm_query.weight, dec.norm_query.bias)
        window = F.layer_norm(tokens[ws : ws + wl], (d,), dec.norm_text.weight, dec.norm_text.bias)
        kv_in = torch.cat([q_normed, window], dim=0)
        q = q_normed @ dec.q_proj.weight.T + dec.q_proj.bias
        k = kv_in @ dec.k_proj.weight.T + dec.k_proj.bias
        v = kv_in @ dec.v_proj.weight.T + dec.v_proj.bias
        key_tokens = torch.tensor([s, e] + list(range(ws, ws + wl)))
        heads = []
        for head in range(h):
            sl = slice(head * hw, (head + 1) * hw)
            scores = q[:, sl] @ k[:, sl].T / math.sqrt(hw)
            for marker, boundary in enumerate((s, e)):
                scores[marker] += dec.relative_bias[marker, head, key_tokens - boundary + center]
            heads.append(torch.softmax(scores, dim=-1) @ v[:, sl])
        attended = torch.cat(heads, dim=-1) @ dec.o_proj.weight.T + dec.o_proj.bias
        hidden = q_in + attended + dec.width_embed[:, e - s]
        lin1, act, _, lin2 = dec.mlp
        mlp_in = F.layer_norm(hidden, (d,), dec.norm_mlp.weight, dec.norm_mlp.bias)
        hidden = hidden + lin2(act(lin1(mlp_in)))
        rows.append(dec.classifier(hidden.reshape(2 * d)))
    return torch.stack(rows)


def absolute_reference_logits(dec: AbsoluteSpanDecoder, inputs) -> torch.Tensor:
    """One span at a time, straight from the paper's description.

    Queries [q_i, q_j] with q_i = m_start + pos(i), q_j = m_end + pos(j),
    positions relative to the span's block window; keys/values are the
    (normed) queries themselves followed by the (normed) window tokens plus
    their positions (projected by pos_key_proj for the keys). One pre-norm multi-head cross-attention with a residual,
    a pre-norm MLP with a residual, then a linear classifier on [h_i; h_j].
    """
    tokens = inputs["tokens"]
    h, d = dec.n_heads, dec.width
    hw = d // h
    pos = dec.positions.weight
    rows = []
    for s, e, b in zip(
        inputs["starts"].tolist(), inputs["ends"].tolist(), inputs["span_blocks"].tolist()
    ):
        ws = int(inputs["window_starts"][b])
        wl = int(inputs["window_lengths"][b])
        assert ws <= s <= e < ws + wl
        q_in = torch.stack([dec.m_start + pos[s - ws], dec.m_end + pos[e - ws]])  # (2, d)
        q_normed = F.layer_norm(q_in, (d,), dec.norm_query.weight, dec.norm_query.bias)
        window = F.layer_norm(tokens[ws : ws + wl], (d,), dec.norm_text.weight, dec.norm_text.bias)
        q = q_normed @ dec.q_proj.weight.T + dec.q_proj.bias
        # Text keys: content + positions through their own projection.
        k_text = (
            window @ dec.k_proj.weight.T + dec.k_proj.bias + pos[:wl] @ dec.pos_key_proj.weight.T
        )
        k = torch.cat([q_normed @ dec.k_proj.weight.T + dec.k_proj.bias, k_text], dim=0)
        kv_in = torch.cat([q_normed, window + pos[:wl]], dim=0)  # (2 + wl, d)
        v = kv_in @ dec.v_proj.weight.T + dec.v_proj.bias
        heads = []
        for head in range(h):
            sl = slice(head * hw, (head + 1) * hw)
            weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(hw), dim=-1)
            heads.append(weights @ v[:, sl])
        attended = torch.cat(heads, dim=-1) @ dec.o_proj.weight.T + dec.o_proj.bias
        hidden = q_in + attended
        lin1, act, _, lin2 = dec.mlp
        mlp_in = F.layer_norm(hidden, (d,), dec.norm_mlp.weight, dec.norm_mlp.bias)
        hidden = hidden + lin2(act(lin1(mlp_in)))
        rows.append(dec.classifier(hidden.reshape(2 * d)))
    return torch.stack(rows)


# Budgets that force one attention kernel whatever the batch size.
FUSED = AttentionBudget(fused_elements=1 << 40)
GROUPED = AttentionBudget(fused_elements=0)


@pytest.fixture(params=["fused", "grouped"])
def attention_path(request):
    """Run a test with the whole batch in one masked SDPA call (small
    batches) and with block windows in padded groups (large ones)."""
    return FUSED if request.param == "fused" else GROUPED


def test_decoder_matches_naive_reference(attention_path, scheme):
    dec = make_decoder(scheme=scheme, budget=attention_path)
    inputs = make_inputs(LENGTHS)
    assert int(inputs["span_blocks"].max()) + 1 >= 19  # the long doc has many blocks
    with torch.no_grad():
        got = dec(**inputs)
        expected = reference_logits(dec, inputs)
    assert got.shape == (
        sum(min(n, MAX_LEN) * n - min(n, MAX_LEN) * (min(n, MAX_LEN) - 1) // 2 for n in LENGTHS),
        N_CLASSES,
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bound", ["score_elements", "min_split_elements"])
def test_decoder_matches_reference_however_blocks_are_grouped(bound, scheme):
    # One group per block (memory bound), or a split wherever windows
    # differ by 2x: grouping must not change any result.
    budget = dataclasses.replace(GROUPED, **{bound: 1 if bound == "score_elements" else 0})
    dec = make_decoder(seed=1, scheme=scheme, budget=budget)
    inputs = make_inputs(LENGTHS, seed=1)
    with torch.no_grad():
        expected = reference_logits(dec, inputs)
        got = dec(**inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("keep_every", [3, 17, 101])
def test_decoder_on_a_sparse_subset_of_spans_matches_reference(keep_every, attention_path, scheme):
    """After span filtering only a few (block, marker, position) queries are
    left, unevenly spread over blocks: each must still get its own attention."""
    dec = make_decoder(seed=2, scheme=scheme, budget=attention_path)
    inputs = make_inputs(LENGTHS, seed=2)
    subset = torch.arange(0, inputs["starts"].shape[0], keep_every)
    for key in ("starts", "ends", "span_blocks"):
        inputs[key] = inputs[key][subset]
    with torch.no_grad():
        got = dec(**inputs)
        expected = reference_logits(dec, inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_precomputed_query_tables_give_the_same_logits(scheme):
    dec = make_decoder(seed=3, scheme=scheme)
    inputs = make_inputs(LENGTHS, seed=3)
    with torch.no_grad():
        expected = dec(**inputs)
        got = dec(**inputs, query_tables=dec.query_tables())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_decoder_spans_do_not_attend_to_each_other(attention_path, scheme):
    """Decoding a subset of spans gives the same logits for those spans."""
    dec = make_decoder(scheme=scheme, budget=attention_path)
    inputs = make_inputs(LENGTHS)
    with torch.no_grad():
        full = dec(**inputs)
        subset = torch.arange(0, inputs["starts"].shape[0], 7)
        sub_inputs = dict(inputs)
        for key in ("starts", "ends", "span_blocks"):
            sub_inputs[key] = inputs[key][subset]
        partial = dec(**sub_inputs)
    torch.testing.assert_close(partial, full[subset], atol=1e-5, rtol=1e-5)


def test_decoder_no_spans(scheme):
    dec = make_decoder(scheme=scheme)
    inputs = make_inputs([3])
    for key in ("starts", "ends", "span_blocks"):
        inputs[key] = inputs[key][:0]
    out = dec(**inputs)
    assert out.shape == (0, N_CLASSES)


def test_decoder_width_must_divide_heads():
    with pytest.raises(ValueError, match="n_heads"):
        AbsoluteSpanDecoder(
            30, 3, 4, 4.0, 0.0, 10, position_init="sinusoidal", position_key_scale=1.0
        )
    with pytest.raises(ValueError, match="n_heads"):
        RelativeSpanDecoder(30, 3, 4, 4.0, 0.0, 10, max_span_length=4)


def test_gradients_flow_to_every_token(attention_path, scheme):
    dec = make_decoder(scheme=scheme, budget=attention_path)
    inputs = make_inputs(LENGTHS)
    inputs["tokens"].requires_grad_(True)
    dec(**inputs).sum().backward()
    grad = inputs["tokens"].grad
    assert grad is not None
    assert (grad.abs().sum(dim=1) > 0).all()
    for name, param in dec.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gradient_of_one_span_is_local_to_its_window(attention_path, scheme):
    dec = make_decoder(scheme=scheme, budget=attention_path)
    inputs = make_inputs([300])
    inputs["tokens"].requires_grad_(True)
    logits = dec(**inputs)
    k = int((inputs["starts"] == 150).nonzero()[0])
    logits[k].sum().backward()
    b = int(inputs["span_blocks"][k])
    lo = int(inputs["window_starts"][b])
    hi = lo + int(inputs["window_lengths"][b])
    touched = (inputs["tokens"].grad.abs().sum(dim=1) > 0).nonzero().squeeze(-1)
    assert lo > 0 and hi < 300
    assert touched.min() == lo and touched.max() == hi - 1
    assert touched.shape[0] == hi - lo


# Span filter ----------------------------------------------------------------------


def brute_force_keep(token_logits, starts, ends, threshold):
    probs = torch.sigmoid(token_logits)
    return torch.tensor(
        [
            bool((probs[s : e + 1] >= threshold).all())
            for s, e in zip(starts.tolist(), ends.tolist())
        ]
    )


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7, 0.95])
def test_spans_to_keep_matches_brute_force(threshold):
    inputs = make_inputs([5, 0, 1, 37, 50])
    gen = torch.Generator().manual_seed(3)
    token_logits = torch.randn(inputs["tokens"].shape[0], generator=gen) * 2
    keep = spans_to_keep(token_logits, inputs["starts"], inputs["ends"], threshold)
    expected = brute_force_keep(token_logits, inputs["starts"], inputs["ends"], threshold)
    assert keep.dtype == torch.bool
    assert torch.equal(keep, expected)
    assert 0 < int(keep.sum()) < keep.shape[0]


def test_spans_to_keep_threshold_zero_keeps_all():
    inputs = make_inputs([5, 12])
    token_logits = torch.full((17,), -50.0)
    keep = spans_to_keep(token_logits, inputs["starts"], inputs["ends"], 0.0)
    assert keep.all() and keep.shape == inputs["starts"].shape


def test_span_filter_shape():
    sf = SpanFilter(WIDTH)
    assert sf(torch.randn(7, WIDTH)).shape == (7,)


def net_config(span_filter=True):
    return {
        "width": WIDTH,
        "n_classes": N_CLASSES,
        "n_heads": N_HEADS,
        "mlp_ratio": 2.0,
        "dropout": 0.0,
        "n_positions": max_window_length(MAX_LEN, BLOCK_SIZE, CONTEXT),
        "span_filter": span_filter,
        "positions": "relative",
        "max_span_length": MAX_LEN,
    }


def test_net_prunes_spans_and_keeps_their_logits():
    torch.manual_seed(0)
    net = SpanDecNet(net_config()).eval()
    inputs = make_inputs(LENGTHS)
    with torch.no_grad():
        all_logits, token_logits, all_kept = net(**inputs, sf_threshold=0.0)
        logits, token_logits2, kept = net(**inputs, sf_threshold=0.5)
    n = inputs["starts"].shape[0]
    assert torch.equal(all_kept, torch.arange(n))
    assert token_logits.shape == (sum(LENGTHS),)
    torch.testing.assert_close(token_logits, token_logits2)
    expected = (
        brute_force_keep(token_logits, inputs["starts"], inputs["ends"], 0.5).nonzero().squeeze(-1)
    )
    assert torch.equal(kept, expected)
    assert 0 < kept.shape[0] < n
    torch.testing.assert_close(logits, all_logits[kept], atol=1e-5, rtol=1e-5)


def test_net_without_span_filter_ignores_threshold():
    torch.manual_seed(0)
    net = SpanDecNet(net_config(span_filter=False)).eval()
    assert not net.has_span_filter
    inputs = make_inputs([5, 9])
    with torch.no_grad():
        logits, token_logits, kept = net(**inputs, sf_threshold=0.9)
    assert kept.shape[0] == inputs["starts"].shape[0]
    assert logits.shape == (kept.shape[0], N_CLASSES)
    assert torch.equal(token_logits, torch.zeros(14))


def test_inference_chunking_gives_the_same_logits(scheme):
    """Long docs are decoded in span chunks at inference; chunk size must not
    change the result."""
    dec = make_decoder(scheme=scheme)
    inputs = make_inputs(LENGTHS)
    with torch.no_grad():
        whole = dec(**inputs)
        dec.budget = AttentionBudget(inference_spans=37)
        chunked = dec(**inputs)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_parameter_count_is_the_papers():
    """The paper's Table 8 gives SpanDec 1.8M parameters on a 384-wide encoder
    (CoNLL++: O + 4 labels); the README says it matches."""
    config = {
        **net_config(),
        "width": 384,
        "n_heads": 12,
        "mlp_ratio": 4.0,
        "max_span_length": 8,
        "n_positions": max_window_length(8, 64, 64),
    }
    n_params = sum(p.numel() for p in SpanDecNet(config).parameters())
    assert round(n_params / 1e6, 1) == 1.8, n_params


def test_exported_names_are_the_decoders_layers(scheme):
    """serving.py quantizes PER_SPAN_LINEARS by name, the load check reads
    MLP_IN's shape from mlp_width, the optimizer matches PARAMETER_PREFIX:
    the names must be what the decoder builds."""
    dec = make_decoder(scheme=scheme)
    for name in PER_SPAN_LINEARS:
        assert isinstance(dec.get_submodule(name), torch.nn.Linear), name
    assert dec.get_submodule(MLP_IN).weight.shape == (mlp_width(WIDTH, 2.0), WIDTH)
    names = [name for name, _ in SpanDecNet(net_config()).named_parameters()]
    assert names and all(name.startswith(PARAMETER_PREFIX + ".") for name in names)


def test_a_net_config_saved_before_the_position_keys_still_builds_and_loads():
    """Configs saved before "positions", "position_init" and
    "position_key_scale" existed were absolute, sinusoidal, scale 1."""
    config = {key: value for key, value in net_config().items() if key != "max_span_length"}
    config["positions"] = "absolute"
    torch.manual_seed(0)
    current = SpanDecNet({**config, "position_init": "sinusoidal", "position_key_scale": 1.0})
    del config["positions"]
    old = SpanDecNet(config)
    assert isinstance(old.decoder, AbsoluteSpanDecoder)
    old.load_state_dict(current.state_dict())
    inputs = make_inputs([5, 9])
    with torch.no_grad():
        torch.testing.assert_close(
            old.eval()(**inputs, sf_threshold=0.0), current.eval()(**inputs, sf_threshold=0.0)
        )

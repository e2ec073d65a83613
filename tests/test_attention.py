"""Self-attention over pixels: the causal transformer sees exactly the whole past (Jacobian, float64), its
probabilities sum to one, its key/value cache gives the logits of the full forward pass, and cached
sampling returns the very images naive sampling does with the same seed (binary, K levels, colour,
completion, temperature)."""

import pytest
import torch
import torch.nn.functional as F
from model_support import total_probability

from course_lib import (
    CourseError,
    PixelTransformer,
    evaluate,
    fit,
    load_dataset,
    load_model,
    occlude,
    sample,
    sample_with_cache,
    save_checkpoint,
)
from course_lib.attention import AttentionCache, CausalSelfAttention, TransformerBlock, attend, causal_mask
from course_lib.causality import causality_violations, dependency_matrix

CONFIGS = {
    "binary": dict(image_shape=(1, 3, 4), dim=8, heads=2, layers=2),
    "colour, 5 levels": dict(image_shape=(3, 2, 3), levels=5, dim=12, heads=3, layers=2),
    "256 levels, one layer": dict(image_shape=(1, 2, 3), levels=256, dim=8, heads=1, layers=1),
}


def build(name, seed=0, dtype=torch.float64, **changes):
    """A model of CONFIGS[name] with every parameter random (LayerNorm gains, start vector and biases too, so
    that no two parts of the network look alike, as they do at initialisation)."""
    torch.manual_seed(seed)
    model = PixelTransformer(**{**CONFIGS[name], **changes}).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn_like(p) + (1 if p.dim() == 1 and p.shape[0] == model.position.shape[1] else 0))
    return model


def test_the_causal_mask_forbids_the_future_only_on_the_device_asked_for():
    assert causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    assert causal_mask(3, device="meta").device.type == "meta"  # PyTorch's shape-only device: no GPU needed


def test_attend_is_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 5, 6, dtype=torch.float64)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(attend(q, k, v, causal_mask(5)), want, atol=1e-12)
    assert torch.allclose(attend(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-12)


@pytest.mark.parametrize("lead", [(), (3,)])
def test_attend_takes_any_number_of_leading_dimensions(lead):
    """q, k, v of shape (..., T, dh) with no batch or one batch dimension: softmax(q k^T / sqrt(dh)) v."""
    torch.manual_seed(1)
    q, k, v = torch.randn(3, *lead, 4, 6, dtype=torch.float64)
    want = torch.softmax(q @ k.mT / 6**0.5, -1) @ v
    assert torch.allclose(attend(q, k, v), want, atol=1e-12)


def test_a_block_is_pre_norm_attention_then_a_gelu_mlp():
    """h + attention(LN1(h)), then + Linear(GELU(Linear(LN2(h)))), the MLP four times wider."""
    torch.manual_seed(2)
    block, h = TransformerBlock(8, 2).double(), torch.randn(2, 5, 8, dtype=torch.float64)
    wide, narrow = [m for m in block.mlp if isinstance(m, torch.nn.Linear)]
    assert (wide.in_features, wide.out_features, narrow.out_features) == (8, 32, 8)
    h1 = h + block.attn(block.ln1(h))
    assert torch.allclose(block(h), h1 + narrow(F.gelu(wide(block.ln2(h1)))), atol=1e-12)


def test_self_attention_layer_shapes_and_heads():
    layer = CausalSelfAttention(12, 3)
    assert layer(torch.randn(2, 7, 12)).shape == (2, 7, 12)
    q, k, v = layer.split(torch.randn(2, 7, 12))
    assert q.shape == k.shape == v.shape == (2, 3, 7, 4)
    with pytest.raises(CourseError, match="multiple of heads"):
        CausalSelfAttention(10, 3)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_output_sees_exactly_its_whole_past(name):
    model = build(name)
    assert causality_violations(model) == []
    dep = dependency_matrix(model)
    n = dep.shape[0]
    assert torch.equal(dep, torch.ones(n, n, dtype=torch.bool).tril(-1)), "attention reaches every earlier sub-pixel"


@pytest.mark.parametrize("shape, levels", [((1, 2, 2), 2), ((1, 1, 3), 3), ((2, 1, 1), 4)])
def test_probabilities_of_every_image_sum_to_one(shape, levels):
    torch.manual_seed(1)
    model = PixelTransformer(shape, levels=levels, dim=8, heads=2, layers=2).double().eval()
    assert abs(total_probability(model, shape, levels) - 1) < 1e-6  # the log-likelihood is summed in float32


def test_logits_layout_matches_the_convolutional_models():
    torch.manual_seed(0)
    model = PixelTransformer((3, 2, 3), levels=4, dim=8, heads=2, layers=1)
    x = torch.randint(0, 4, (5, 3, 2, 3))
    logits = model(x)
    assert logits.shape == (5, 4, 3, 2, 3)
    per_dim = -F.cross_entropy(logits, x, reduction="none")
    assert torch.allclose(model.log_prob(x), per_dim.flatten(1).sum(1))
    assert torch.allclose(model(x, score=True), per_dim.flatten(1).sum(1))
    assert PixelTransformer((1, 2, 3), dim=4, heads=1)(torch.zeros(2, 1, 2, 3, dtype=torch.long)).shape == (2, 1, 2, 3)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_cache_gives_the_logits_of_the_full_forward_pass(name):
    model = build(name)
    c, h, w = model.image_shape
    x = torch.randint(0, model.levels, (3, c, h, w))
    with torch.no_grad():
        full = model(x)
        cache = model.make_cache(x)
        assert isinstance(cache, AttentionCache) and not cache.skip_given_rows
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                for ch in range(c):
                    want = full[:, ch, i, j] if model.levels == 2 else full[:, :, ch, i, j]
                    assert torch.allclose(cache.logits_at(j, ch), want, atol=1e-10)
    assert cache.keys[0][:, :, -1].abs().sum() > 0, "the last token's keys are stored"


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_sampling_draws_the_images_naive_sampling_draws(name):
    model = build(name, seed=1, dtype=torch.float32)
    for seed, temperature in [(0, 1.0), (5, 0.7)]:
        naive = sample(model, 4, seed=seed, temperature=temperature, method="naive")
        cached = sample_with_cache(model, 4, seed=seed, temperature=temperature)
        assert torch.equal(cached, naive)
    assert model.training is False


def test_a_model_without_layers_samples_exactly_too():
    """No attention at all: each sub-pixel depends on the one before it only (a Markov chain)."""
    model = build("colour, 5 levels", layers=0, dtype=torch.float32)
    assert causality_violations(model) == []
    assert torch.equal(sample_with_cache(model, 3, seed=4), sample(model, 3, seed=4, method="naive"))


def test_cached_sampling_runs_the_model_in_eval_mode():
    model = build("binary", dtype=torch.float32).train()
    modes = []
    model.head_out.register_forward_hook(lambda module, inputs, output: modes.append(model.training))
    sample_with_cache(model, 2, seed=0)
    assert modes and not any(modes) and model.training


def test_cached_sampling_builds_no_autograd_graph(monkeypatch):
    import course_lib.attention as attention

    grad = []
    real = attention.probabilities
    monkeypatch.setattr(attention, "probabilities", lambda *a: grad.append(torch.is_grad_enabled()) or real(*a))
    sample_with_cache(build("binary", dtype=torch.float32), 2, seed=0)
    assert grad and not any(grad)


def test_cached_completion_keeps_the_given_pixels_and_matches_naive():
    model = build("colour, 5 levels", seed=2, dtype=torch.float32)
    torch.manual_seed(3)
    images = torch.randint(0, 5, (4, 3, 2, 3))
    given = occlude(images, "right")
    cached = sample_with_cache(model, 4, seed=7, given=given)
    assert torch.equal(cached[..., :1], images[..., :1])
    assert torch.equal(cached, sample(model, 4, seed=7, given=given, method="naive"))
    known = torch.ones(1, 1, 2, 3, dtype=torch.bool)
    assert torch.equal(sample_with_cache(model, 4, seed=1, given=(images, known)), images)


def test_sampling_arguments_are_checked_and_the_mode_is_restored():
    model = build("binary", dtype=torch.float32).train()
    with pytest.raises(CourseError, match="temperature"):
        sample_with_cache(model, 2, temperature=0)
    x = sample_with_cache(model, 3)
    assert x.shape == (3, 1, 3, 4) and x.device.type == "cpu" and model.training
    with pytest.raises(CourseError, match="unconditional"):
        PixelTransformer((1, 2, 2), num_classes=3)


def test_fit_evaluate_and_checkpoints(tmp_path):
    train = load_dataset("shapes", "train", size=6, limit=200)
    test = load_dataset("shapes", "test", size=6, limit=100)
    torch.manual_seed(0)
    model = PixelTransformer((1, 6, 6), dim=16, heads=2, layers=1)
    before = evaluate(model, test)["nats"]
    fit(model, train, test, epochs=2, batch_size=32, lr=5e-3, progress=False)
    after = evaluate(model, test)["nats"]
    assert after < before - 3
    path = save_checkpoint(tmp_path / "attention.pt", model)
    again = load_model(path)
    assert again.config == dict(image_shape=[1, 6, 6], levels=2, dim=16, heads=2, layers=1)
    assert evaluate(again, test)["nats"] == pytest.approx(after, rel=1e-6)

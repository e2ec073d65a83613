"""Model construction: defaults, logits layout, parameter-free of cross-position mixing, clear errors."""

import pytest
import torch
import torch.nn.functional as F

from course_lib import CourseError, GatedPixelCNN, PixelCNN, build_model, count_parameters
from course_lib.models import log_prob_from_logits, model_name


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_defaults_are_for_binarized_28x28(cls):
    model = cls()
    assert model.image_shape == (1, 28, 28) and model.levels == 2 and model.num_classes is None
    x = torch.randint(0, 2, (3, 1, 28, 28))
    assert model(x).shape == (3, 1, 28, 28)
    assert model.log_prob(x).shape == (3,)


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_categorical_logits_keep_h_and_w_last(cls):
    model = cls(image_shape=(3, 8, 8), levels=256, channels=12)
    x = torch.randint(0, 256, (2, 3, 8, 8))
    assert model(x).shape == (2, 256, 3, 8, 8)


def test_build_model_by_name_and_unknown_names():
    assert isinstance(build_model("gated", channels=8), GatedPixelCNN)
    assert isinstance(build_model("PixelCNN", channels=8, n_blocks=1), PixelCNN)
    with pytest.raises(CourseError, match="Unknown model 'transformer'; choose one of: gated, pixelcnn"):
        build_model("transformer")
    with pytest.raises(CourseError, match="levels=1"):
        GatedPixelCNN(levels=1)


def test_no_batchnorm_or_other_position_mixing_layers():
    for model in (GatedPixelCNN(), PixelCNN(), GatedPixelCNN(num_classes=10)):
        kinds = {type(m).__name__ for m in model.modules()}
        assert not kinds & {"BatchNorm2d", "GroupNorm", "InstanceNorm2d", "LayerNorm", "Dropout"}


def test_conditional_model_needs_labels():
    model = GatedPixelCNN(channels=8, dilations=(1,), num_classes=10)
    with pytest.raises(CourseError, match="class-conditional"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.long))
    a = model(torch.zeros(1, 1, 28, 28, dtype=torch.long), torch.tensor([1]))
    b = model(torch.zeros(1, 1, 28, 28, dtype=torch.long), torch.tensor([2]))
    assert not torch.allclose(a, b)


def test_levels_boundaries():
    """2 to 256 levels are supported; 1 and 257 are rejected with a clear error."""
    for levels in (2, 3, 256):
        assert GatedPixelCNN((1, 4, 4), levels=levels, channels=4, dilations=(1,)).levels == levels
    for levels in (1, 257):
        with pytest.raises(CourseError, match=f"levels={levels} is not supported"):
            PixelCNN((1, 4, 4), levels=levels, channels=4, n_blocks=1)


def test_wrong_image_size_names_both_sizes():
    model = PixelCNN((1, 6, 6), channels=4, n_blocks=1)
    with pytest.raises(CourseError, match=r"built for 1x6x6 images but got 1x5x6.*image_shape=\(1, 5, 6\)"):
        model(torch.zeros(2, 1, 5, 6, dtype=torch.long))
    with pytest.raises(CourseError, match="built for 1x6x6 images but got 3x6x6"):
        model(torch.zeros(2, 3, 6, 6, dtype=torch.long))


def test_unconditional_models_accept_no_labels_and_conditional_pixelcnn_uses_them():
    model = PixelCNN((1, 5, 5), channels=4, n_blocks=1, num_classes=3)
    assert model.class_bias.num_embeddings == 3 and model.class_bias.embedding_dim == 4
    x = torch.ones(1, 1, 5, 5, dtype=torch.long)
    assert not torch.allclose(model(x, torch.tensor([0])), model(x, torch.tensor([2])))
    with pytest.raises(CourseError, match="class-conditional"):
        model(x)
    assert PixelCNN((1, 5, 5), channels=4, n_blocks=1).class_bias is None


@pytest.mark.parametrize("levels", [2, 4, 256])
def test_scale_maps_levels_to_minus_one_plus_one(levels):
    model = GatedPixelCNN((1, 2, 2), levels=levels, channels=4, dilations=(1,)).double()
    x = torch.tensor([[[[0, levels - 1], [levels // 2, 1]]]])
    s = model.scale(x)
    assert s.dtype == torch.float64
    expected = [[-1.0, 1.0], [2 * (levels // 2) / (levels - 1) - 1, 2 / (levels - 1) - 1]]
    assert s[0, 0].flatten().tolist() == pytest.approx([v for row in expected for v in row])


def test_logits_layout_puts_the_k_logits_of_channel_c_together():
    """The output layer's channel c*K + k holds logit k of colour channel c: logits[b, k, c, i, j]."""
    model = GatedPixelCNN((3, 2, 2), levels=4, channels=6, dilations=(1,))
    out = torch.arange(1 * 12 * 2 * 2, dtype=torch.float32).view(1, 12, 2, 2)
    logits = model.to_logits(out)
    assert logits.shape == (1, 4, 3, 2, 2)
    for c in range(3):
        for k in range(4):
            assert torch.equal(logits[0, k, c], out[0, c * 4 + k])
    binary = GatedPixelCNN((3, 2, 2), levels=2, channels=6, dilations=(1,))
    assert binary.outputs_per_channel == 1 and torch.equal(binary.to_logits(out[:, :3]), out[:, :3])
    assert model.outputs_per_channel == 4


def _conv(module, x, dilation=1):
    """A (masked) convolution computed from its parts: kernel * mask, bias, centred padding, the dilation
    the model was asked for."""
    w = module.weight * module.mask if hasattr(module, "mask") else module.weight
    kh, kw = w.shape[2:]
    return F.conv2d(x, w, module.bias, padding=(dilation * (kh // 2), dilation * (kw // 2)), dilation=dilation)


def _gate(t):
    p = t.shape[1] // 2
    return torch.tanh(t[:, :p]) * torch.sigmoid(t[:, p:])


def reference_gated(model, x, labels=None):
    """The Gated PixelCNN of van den Oord et al. (2016), written out step by step: the test's spec."""
    s = x.double() * 2 / (model.levels - 1) - 1
    v, h = _conv(model.v_in, s), _conv(model.h_in, s)
    for layer, d in zip(model.layers, model.config["dilations"]):
        v_feat = _conv(layer.v_conv, v, d)
        h_feat = _conv(layer.h_conv, h, d) + _conv(layer.v_to_h, v_feat)
        if labels is not None:
            bias = layer.class_bias.weight[labels][:, :, None, None]
            p2 = v_feat.shape[1]
            v_feat, h_feat = v_feat + bias[:, :p2], h_feat + bias[:, p2:]
        v, h = _gate(v_feat), h + _conv(layer.h_out, _gate(h_feat))
    out = _conv(model.out2, F.elu(_conv(model.out1, F.elu(h))))
    return out


def reference_pixelcnn(model, x, labels=None):
    """The PixelCNN with residual blocks (1x1 -> kxk -> 1x1, ReLU before each), written out step by step."""
    h = _conv(model.input_conv, x.double() * 2 / (model.levels - 1) - 1)
    if labels is not None:
        h = h + model.class_bias.weight[labels][:, :, None, None]
    for block in model.blocks:
        r = _conv(block.reduce, F.relu(h))
        r = _conv(block.conv, F.relu(r))
        h = h + _conv(block.expand, F.relu(r))
    return _conv(model.out2, F.relu(_conv(model.out1, F.relu(h))))


def _randomise(model):
    """Random weights and biases everywhere (class biases included, which start at random anyway)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.double()


GATED_CONFIGS = [
    dict(image_shape=(1, 7, 6), levels=2, channels=4, dilations=(1, 2)),
    dict(image_shape=(3, 5, 6), levels=4, channels=6, dilations=(2, 1), kernel_size=5, first_kernel_size=5),
    dict(image_shape=(1, 6, 6), levels=2, channels=4, dilations=(1, 3), num_classes=3),
]
PIXELCNN_CONFIGS = [
    dict(image_shape=(1, 7, 6), levels=2, channels=6, n_blocks=2),
    dict(image_shape=(3, 5, 6), levels=3, channels=9, n_blocks=1, kernel_size=5, first_kernel_size=3),
    dict(image_shape=(1, 6, 6), levels=2, channels=4, n_blocks=2, num_classes=3),
]


@pytest.mark.parametrize("config", GATED_CONFIGS + PIXELCNN_CONFIGS)
def test_forward_matches_the_step_by_step_reference(config):
    """Every layer, activation, gate, bias, residual and dilation of the forward pass, in float64."""
    gated = "dilations" in config
    model = _randomise((GatedPixelCNN if gated else PixelCNN)(**config))
    c, h, w = config["image_shape"]
    x = torch.randint(0, config["levels"], (2, c, h, w), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2]) if config.get("num_classes") else None
    out = (reference_gated if gated else reference_pixelcnn)(model, x, labels)
    assert torch.allclose(model(x, labels), model.to_logits(out), atol=1e-10)


def test_residual_block_halves_its_width_but_keeps_one_channel_per_colour():
    from course_lib.models import ResidualBlock

    assert ResidualBlock(8, 1).conv.in_channels == 4
    assert ResidualBlock(9, 3).conv.out_channels == 4
    assert ResidualBlock(4, 3).conv.in_channels == 3  # never fewer channels than colour groups
    assert ResidualBlock(8, 1, dilation=2).conv.dilation == (2, 2)


def test_parameter_counts_by_hand():
    """Every weight, bias and class embedding is there, with the documented widths."""
    p, c, k, k0, layers, n_cls = 4, 1, 3, 7, 2, 3
    gated = GatedPixelCNN((c, 6, 6), levels=2, channels=p, dilations=(1, 2), num_classes=n_cls)
    per_layer = (
        (p * 2 * p * k * k + 2 * p) + (p * 2 * p * k + 2 * p) + (2 * p * 2 * p + 2 * p) + (p * p + p) + n_cls * 4 * p
    )
    expected = (c * p * k0 * k0 + p) + (c * p * k0 + p) + layers * per_layer + (p * p + p) + (p * c + c)
    assert count_parameters(gated) == expected
    ch, half, blocks, K = 6, 3, 2, 4
    pix = PixelCNN((1, 5, 5), levels=K, channels=ch, n_blocks=blocks)
    per_block = (ch * half + half) + (half * half * 9 + half) + (half * ch + ch)
    assert count_parameters(pix) == (1 * ch * 49 + ch) + blocks * per_block + (ch * ch + ch) + (ch * K + K)


def test_count_parameters_counts_only_trainable_ones():
    model = PixelCNN((1, 5, 5), channels=4, n_blocks=1)
    total = count_parameters(model)
    model.out2.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.out2.weight.numel()


@pytest.mark.parametrize(
    "name,config",
    [
        (
            "gated",
            dict(
                image_shape=(3, 5, 4),
                levels=5,
                channels=6,
                dilations=[2, 1],
                kernel_size=5,
                first_kernel_size=3,
                num_classes=4,
            ),
        ),
        (
            "pixelcnn",
            dict(
                image_shape=(3, 5, 4),
                levels=3,
                channels=6,
                n_blocks=2,
                kernel_size=5,
                first_kernel_size=3,
                num_classes=2,
            ),
        ),
    ],
)
def test_config_rebuilds_the_same_model(name, config):
    """`model.config` holds every constructor argument: build_model(name, **config) gives the same architecture."""
    model = build_model(name, **config)
    assert model.config == {**config, "image_shape": list(config["image_shape"])}
    again = build_model(name, **model.config)
    assert again.config == model.config and again.image_shape == (3, 5, 4)
    assert [tuple(p.shape) for p in again.parameters()] == [tuple(p.shape) for p in model.parameters()]
    model.config["levels"] = 99  # a copy: editing it changes nothing
    assert model.config["levels"] == config["levels"]


def test_build_model_takes_class_names_and_list_shapes():
    model = build_model("GatedPixelCNN", image_shape=[1, 4, 4], channels=4, dilations=(1,))
    assert isinstance(model, GatedPixelCNN) and model.image_shape == (1, 4, 4)
    assert model_name(model) == "gated" and model_name(PixelCNN(channels=4, n_blocks=1)) == "pixelcnn"


def test_log_prob_is_the_likelihood_of_its_own_logits():
    model = _randomise(GatedPixelCNN((1, 4, 4), levels=3, channels=4, dilations=(1,)))
    x = torch.randint(0, 3, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(model(x), dim=1).gather(1, x[:, None]).flatten(1).sum(1)
    assert torch.allclose(model.log_prob(x).double(), logp, atol=1e-5)


def test_gate_is_tanh_times_sigmoid_of_the_two_halves():
    from course_lib.models import gate

    t = torch.tensor([[[[0.5]], [[-1.0]], [[2.0]], [[0.0]]]])
    expected = [torch.tanh(torch.tensor(0.5)) * torch.sigmoid(torch.tensor(2.0)), torch.tanh(torch.tensor(-1.0)) * 0.5]
    assert gate(t).flatten().tolist() == pytest.approx([e.item() for e in expected])


class WiderOutput(GatedPixelCNN):
    """A learner's variant: the Gated PixelCNN with an extra scale on its logits."""

    def forward(self, x, labels=None):
        return 2 * super().forward(x, labels)


def test_a_registered_subclass_saves_and_loads_as_itself(tmp_path):
    from course_lib.checkpoint import load_model, save_checkpoint
    from course_lib.models import MODELS, register_model

    register_model("wider", WiderOutput)
    try:
        model = WiderOutput((1, 4, 4), channels=4, dilations=(1,))
        assert model_name(model) == "wider"
        save_checkpoint(tmp_path / "w.pt", model)
        again = load_model(tmp_path / "w.pt")
        assert type(again) is WiderOutput
        x = torch.randint(0, 2, (2, 1, 4, 4))
        assert torch.equal(again(x), model.eval()(x))
    finally:
        MODELS.pop("wider")


def test_what_cannot_be_saved_says_what_is_missing(tmp_path):
    from course_lib.checkpoint import save_checkpoint
    from course_lib.models import AutoregressiveImageModel, register_model

    with pytest.raises(
        CourseError,
        match=r"WiderOutput is not a registered model.*register_model\('my-name', "
        r"WiderOutput\)",
    ):
        save_checkpoint(tmp_path / "w.pt", WiderOutput((1, 4, 4), channels=4, dilations=(1,)))

    class NoConfig(AutoregressiveImageModel):
        def __init__(self):
            super().__init__((1, 2, 2), 2, None)

    with pytest.raises(CourseError, match=r"NoConfig does not record its configuration.*self._config"):
        _ = NoConfig().config
    with pytest.raises(CourseError, match="subclass of AutoregressiveImageModel"):
        register_model("plain", torch.nn.Conv2d)
    assert not (tmp_path / "w.pt").exists()


def test_the_logits_layout_is_decoded_where_it_is_defined():
    """log_prob_from_logits lives in heads (with the layout); models and likelihood, where lessons and their
    checks name it, hold the same function."""
    from course_lib import heads, likelihood, models

    assert likelihood.log_prob_from_logits is models.log_prob_from_logits is heads.log_prob_from_logits


class Wrapper(torch.nn.Module):
    """What torch.compile puts around a model: an `_orig_mod`, and a forward the optimiser must see."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod, self.calls = model, []

    def forward(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self._orig_mod(*args, **kwargs)


@pytest.mark.parametrize(
    "levels, head, asks_score", [(2, "softmax", False), (5, "softmax", False), (5, "logistic", True)]
)
def test_log_likelihood_is_the_one_door_and_runs_the_wrapped_forward(levels, head, asks_score):
    """log_likelihood scores through the (wrapped) model's forward: score=True only for the mixture, whose
    head reads one bin per sub-pixel; model.log_prob and nll give the same numbers."""
    from course_lib.likelihood import nll
    from course_lib.models import log_likelihood

    torch.manual_seed(0)
    model = GatedPixelCNN((1, 4, 4), levels=levels, channels=4, dilations=(1,), head=head, mixtures=2)
    x = torch.randint(0, levels, (3, 1, 4, 4))
    wrapped = Wrapper(model)
    got = log_likelihood(wrapped, x)
    assert wrapped.calls == [{"score": True}] if asks_score else wrapped.calls == [{}]
    assert got.shape == (3,) and got.dtype == torch.float32
    torch.testing.assert_close(got, log_prob_from_logits(model(x), x))
    torch.testing.assert_close(model.log_prob(x), got)
    torch.testing.assert_close(nll(model, x), -got)


def test_log_likelihood_unwraps_distributed_data_parallel(monkeypatch):
    """Inside DistributedDataParallel (its `module`), the mixture's head is still found."""
    from course_lib import models

    model = GatedPixelCNN((1, 3, 3), levels=5, channels=4, dilations=(1,), head="logistic", mixtures=2)

    class FakeDDP(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    assert models._unwrapped(FakeDDP(model)) is model
    assert models._unwrapped(Wrapper(FakeDDP(model))) is model
    assert models._unwrapped(model) is model

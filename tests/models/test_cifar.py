"""CIFAR-style plain and residual nets (He et al. 2016, Section 4.2): sizes, shapes, shortcuts."""

from __future__ import annotations

import pytest
import torch

from resnet_apps.models.cifar import BasicBlock, blocks_per_stage, cifar_net, parameter_count


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)])
def test_parameter_counts_match_the_paper_and_each_other(depth: int, millions: float) -> None:
    residual = parameter_count(cifar_net(depth, residual=True))
    plain = parameter_count(cifar_net(depth, residual=False))
    assert residual == plain  # option-A shortcuts carry no parameters
    assert round(residual / 1e6, 2) == millions  # Table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M


def test_exact_counts_at_20_and_56() -> None:
    assert parameter_count(cifar_net(20, True)) == 269_722
    assert parameter_count(cifar_net(56, False)) == 853_018


@pytest.mark.parametrize("depth", [20, 56])
def test_depth_is_conv_layers_plus_classifier(depth: int) -> None:
    net = cifar_net(depth, residual=False)
    assert len(net.conv_layers()) + 1 == depth
    assert blocks_per_stage(depth) == (depth - 2) // 6


@pytest.mark.parametrize("bad", [7, 19, 21, 0])
def test_depth_must_be_6n_plus_2(bad: int) -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_net(bad, residual=True)


@pytest.mark.parametrize(("bands", "classes", "size"), [(3, 10, 32), (13, 7, 32), (1, 2, 64)])
def test_forward_shapes_any_band_count(bands: int, classes: int, size: int) -> None:
    for residual in (True, False):
        net = cifar_net(8, residual, in_chans=bands, num_classes=classes).eval()
        with torch.no_grad():
            logits = net(torch.randn(2, bands, size, size))
        assert logits.shape == (2, classes)
        assert torch.isfinite(logits).all()


def _zero_branch(block: BasicBlock) -> None:
    with torch.no_grad():
        block.bn2.weight.zero_()  # the branch now ends in BN with gamma 0, beta 0: outputs exactly 0
        block.bn2.bias.zero_()


def test_residual_block_with_zero_branch_is_the_identity() -> None:
    block = BasicBlock(16, 16, stride=1, residual=True).eval()
    _zero_branch(block)
    x = torch.relu(torch.randn(2, 16, 8, 8))  # block inputs come after a ReLU
    assert torch.equal(block(x), x)
    plain = BasicBlock(16, 16, stride=1, residual=False).eval()
    _zero_branch(plain)
    assert torch.equal(plain(x), torch.zeros_like(x))  # no shortcut: nothing passes


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    block = BasicBlock(16, 32, stride=2, residual=True).eval()
    _zero_branch(block)
    x = torch.relu(torch.randn(2, 16, 8, 8))
    out = block(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])  # identity channels in the middle
    assert torch.equal(out[:, :8], torch.zeros(2, 8, 4, 4))
    assert torch.equal(out[:, 24:], torch.zeros(2, 8, 4, 4))


def test_shortcuts_change_the_function_with_equal_weights() -> None:
    torch.manual_seed(0)
    residual = cifar_net(20, residual=True).eval()
    plain = cifar_net(20, residual=False).eval()
    plain.load_state_dict(residual.state_dict())  # same keys, same tensors
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(residual(x), plain(x), atol=1e-3)

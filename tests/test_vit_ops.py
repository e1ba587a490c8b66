"""The ViT's operators: hand-written attention vs SDPA, window partitioning, locality."""

from __future__ import annotations

import pytest
import torch

from lit_vision.models import ViT
from lit_vision.nets.vit import Block, VisionTransformer
from lit_vision.ops.attention import MultiHeadSelfAttention, attention
from lit_vision.ops.windows import (
    window_padding_mask,
    window_partition,
    window_unpartition,
)


@pytest.mark.parametrize("with_mask", [False, True])
def test_manual_attention_equals_sdpa(with_mask):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 16) for _ in range(3))
    mask = None
    if with_mask:
        mask = torch.rand(2, 1, 10, 10) > 0.3
        mask[..., 0] = True  # every query may attend to at least one key
    manual = attention(q, k, v, mask, impl="manual")
    sdpa = attention(q, k, v, mask, impl="sdpa")
    torch.testing.assert_close(manual, sdpa, rtol=1e-5, atol=1e-5)


def test_attention_module_impls_agree_with_gradients():
    torch.manual_seed(0)
    manual = MultiHeadSelfAttention(32, 4, impl="manual")
    sdpa = MultiHeadSelfAttention(32, 4, impl="sdpa")
    sdpa.load_state_dict(manual.state_dict())
    x = torch.randn(3, 7, 32, requires_grad=True)
    out_m, out_s = manual(x), sdpa(x)
    torch.testing.assert_close(out_m, out_s, rtol=1e-5, atol=1e-5)
    (g_m,) = torch.autograd.grad(out_m.square().sum(), x)
    (g_s,) = torch.autograd.grad(out_s.square().sum(), x)
    torch.testing.assert_close(g_m, g_s, rtol=1e-4, atol=1e-5)


def test_vit_manual_and_sdpa_give_same_logits():
    torch.manual_seed(0)
    manual = VisionTransformer(num_classes=10, img_size=64, window_size=3, attention="manual").eval()
    sdpa = VisionTransformer(num_classes=10, img_size=64, window_size=3, attention="sdpa").eval()
    sdpa.load_state_dict(manual.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(manual(images), sdpa(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw,window", [((8, 8), 4), ((7, 5), 4), ((5, 9), 3), ((3, 3), 4)])
def test_window_round_trip_is_exact(hw, window):
    x = torch.randn(2, *hw, 6)
    windows, padded = window_partition(x, window)
    assert windows.shape[1:] == (window, window, 6)
    assert padded[0] % window == 0 and padded[1] % window == 0
    assert windows.shape[0] == 2 * (padded[0] // window) * (padded[1] // window)
    assert torch.equal(window_unpartition(windows, window, padded, hw), x)


def test_window_partition_groups_neighbours_and_pads_with_zeros():
    H, W, window = 5, 6, 4
    coords = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij"), -1).float() + 1
    windows, (Hp, Wp) = window_partition(coords[None], window)  # [4, 4, 4, 2]
    assert (Hp, Wp) == (8, 8)
    # Window 1 is the top-right one: rows 1..4, columns 5..8 (1-based), padded beyond column 6.
    assert torch.equal(windows[1, 0, 0], torch.tensor([1.0, 5.0]))
    assert torch.equal(windows[1, 0, 2], torch.zeros(2))
    mask = window_padding_mask((H, W), window)
    assert mask.shape == (4, 16)
    assert int(mask.sum()) == H * W
    assert window_padding_mask((8, 8), 4) is None


def _changed_tokens(block, x, where):
    with torch.no_grad():
        base = block(x)
        y = x.clone()
        y[0, where[0], where[1]] += torch.randn(x.shape[-1])  # not a constant: LayerNorm would cancel it
        return (block(y) - base).abs().amax(dim=-1)[0] > 1e-6  # [H, W]


@pytest.mark.parametrize("hw,window,where", [((8, 8), 4, (1, 2)), ((8, 8), 4, (6, 5)), ((6, 7), 4, (5, 6))])
def test_windowed_attention_mixes_only_within_window(hw, window, where):
    torch.manual_seed(0)
    block = Block(dim=16, heads=2, window=window).eval()
    changed = _changed_tokens(block, torch.randn(1, *hw, 16), where)
    expected = torch.zeros(hw, dtype=torch.bool)
    r0, c0 = (where[0] // window) * window, (where[1] // window) * window
    expected[r0 : r0 + window, c0 : c0 + window] = True
    assert torch.equal(changed, expected)


def test_global_block_mixes_everywhere():
    torch.manual_seed(0)
    block = Block(dim=16, heads=2, window=0).eval()
    assert _changed_tokens(block, torch.randn(1, 8, 8, 16), (1, 2)).all()


def test_padding_mask_makes_outputs_independent_of_padding():
    """With masking, a window's real tokens give the same outputs whatever the padding:
    the 6×7 grid's last row matches running its windows' real tokens on their own."""
    torch.manual_seed(0)
    block = Block(dim=16, heads=2, window=4, mask_padding=True).eval()
    x = torch.randn(1, 6, 7, 16)
    with torch.no_grad():
        full = block(x)
        # The bottom-right window holds rows 4-5 and columns 4-6: as a 2×3 grid with a
        # global block of the same weights, it is the same attention over the same tokens.
        glob = Block(dim=16, heads=2, window=0).eval()
        glob.load_state_dict(block.state_dict())
        alone = glob(x[:, 4:6, 4:7])
    torch.testing.assert_close(full[:, 4:6, 4:7], alone, rtol=1e-5, atol=1e-5)


def test_default_vit_has_the_assignments_parameter_count():
    model = ViT()  # num_classes 100, the assignment's table
    count = sum(p.numel() for p in model.parameters())
    assert count == 1_959_076
    assert abs(count - 1.96e6) / 1.96e6 < 0.005

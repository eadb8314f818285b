import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

import model
from engine import weights


def _capture(net):
    """Forward hooks recording the trunk map, the part-branch inputs and the discriminator input."""
    seen = {}
    net.trunk.register_forward_hook(lambda m, i, o: seen.__setitem__('fmap', o))
    net.discriminator[0].register_forward_hook(lambda m, i, o: seen.__setitem__('disc_in', i[0]))
    if net.parts:
        net.top[0].register_forward_hook(lambda m, i, o: seen.__setitem__('top_in', i[0]))
        net.bottom[0].register_forward_hook(lambda m, i, o: seen.__setitem__('bottom_in', i[0]))
    return seen


def test_split_rows_on_7x7_map_matches_authors_code():
    fmap = torch.arange(7.).view(1, 1, 7, 1).expand(2, 512, 7, 7)
    top, bottom = model.split_rows(fmap)
    assert top[0, 0, :, 0].tolist() == [0, 1, 2]
    assert bottom[0, 0, :, 0].tolist() == [3, 4, 5, 6]


def test_224_forward_shapes_and_part_pooling():
    torch.manual_seed(0)
    net = model.PartNet().eval()
    seen = _capture(net)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = net(x)
    fmap = seen['fmap']
    assert fmap.shape == (2, 512, 7, 7)
    torch.testing.assert_close(seen['top_in'], fmap[:, :, :3].mean((2, 3)))
    torch.testing.assert_close(seen['bottom_in'], fmap[:, :, 3:].mean((2, 3)))
    assert seen['disc_in'].shape == (2, 128)
    for k in ('top', 'bottom', 'joint'):
        assert out[k].shape == (2, 3)
    assert out['domain'].shape == (2, 2)


@pytest.mark.parametrize('size,rows,top', [(112, 4, 2), (64, 2, 1), (160, 5, 2)])
def test_other_sizes_use_the_3_of_7_rule(size, rows, top):
    net = model.PartNet().eval()
    seen = _capture(net)
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    fmap = seen['fmap']
    assert fmap.shape[-2] == rows and model.top_rows(rows) == top
    torch.testing.assert_close(seen['top_in'], fmap[:, :, :top].mean((2, 3)))
    torch.testing.assert_close(seen['bottom_in'], fmap[:, :, top:].mean((2, 3)))
    assert out['joint'].shape == (2, 3) and out['domain'].shape == (2, 2)


def test_top_rows_keeps_both_halves_nonempty():
    assert [model.top_rows(h) for h in range(2, 15)] == [1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6]
    assert all(1 <= model.top_rows(h) <= h - 1 for h in range(2, 100))


def test_too_small_input_raises_a_clear_error():
    net = model.PartNet().eval()
    with pytest.raises(ValueError, match=r'input height 32 .*at least 33'):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='1-row'):
        model.split_rows(torch.zeros(1, 512, 1, 4))


def test_grad_reverse_negates_and_scales_the_gradient():
    x, w = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4)
    y = model.grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * w)


def test_dann_coeff_schedule():
    assert model.dann_coeff(0.0) == 0.0
    values = [model.dann_coeff(p / 20) for p in range(21)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] > 0.999 and values[-1] < 1.0
    assert model.dann_coeff(1.0, gamma=1.0) == pytest.approx(2 / (1 + math.exp(-1)) - 1)


def test_weights_load_from_path_into_the_trunk(tmp_path):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / 'r18.pth'
    torch.save(state, path)
    loaded = weights.imagenet_weights(path)
    net = model.PartNet(weights=loaded)
    trunk = net.trunk.state_dict()
    assert set(trunk) == {k for k in state if not k.startswith('fc.')}
    for k, v in trunk.items():
        assert torch.equal(v, state[k]), k


def test_weights_errors_name_the_path(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        weights.imagenet_weights(missing)
    with pytest.raises(FileNotFoundError, match=r': a folder, not a weights file; pass the \.pth file itself'):
        weights.imagenet_weights(tmp_path)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='garbage.pth') as e:
        weights.imagenet_weights(garbage)
    assert '\n' not in str(e.value) and 'weights_only' not in str(e.value) and len(str(e.value)) < 300
    pickled = tmp_path / 'pickled.pth'
    torch.save({'a': object()}, pickled)      # a pickle that weights_only refuses, with PyTorch's long advice
    with pytest.raises(ValueError, match='pickled.pth') as e:
        weights.imagenet_weights(pickled)
    assert '\n' not in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(RuntimeError):  # strict loading: a trunk key missing is an error, not a silent skip
        model.PartNet(weights={'conv1.weight': torch.zeros(64, 3, 7, 7)})


def test_weights_from_torchvision_cache_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    cache = weights.imagenet_cache_path()
    assert cache == tmp_path / 'checkpoints' / 'resnet18-f37072fd.pth'
    assert weights.imagenet_weights() is None
    cache.parent.mkdir()
    torch.save({'conv1.weight': torch.ones(1)}, cache)
    assert torch.equal(weights.imagenet_weights()['conv1.weight'], torch.ones(1))


def test_losses_are_the_hand_sum_of_cross_entropies():
    torch.manual_seed(2)
    out = {k: torch.randn(6, 3) for k in ('top', 'bottom', 'joint')}
    out['domain'] = torch.randn(6, 2)
    y, d = torch.randint(0, 3, (6,)), torch.randint(0, 2, (6,))
    total, logs = model.losses(out, y, d, lambda_adv=0.4)
    ce = {k: F.cross_entropy(out[k], y) for k in ('top', 'bottom', 'joint')}
    adv = F.cross_entropy(out['domain'], d)
    torch.testing.assert_close(total, ce['top'] + ce['bottom'] + ce['joint'] + 0.4 * adv)
    torch.testing.assert_close(logs['ladv'], adv)
    torch.testing.assert_close(logs['lt'], ce['top'])
    torch.testing.assert_close(logs['lb'], ce['bottom'])
    torch.testing.assert_close(logs['lc'], ce['joint'])
    assert set(logs) == {'lt', 'lb', 'lc', 'ladv'}
    no_adv = sum(ce.values())
    torch.testing.assert_close(model.losses(out, y, d, lambda_adv=0.0)[0], no_adv)
    total, logs = model.losses(out, y, None)
    torch.testing.assert_close(total, no_adv)
    assert 'ladv' not in logs


def test_no_parts_ablation():
    net = model.PartNet(parts=False).eval()
    seen = _capture(net)
    out = net(torch.randn(2, 3, 64, 64))
    assert set(out) == {'joint', 'domain'} and out['joint'].shape == (2, 3) and out['domain'].shape == (2, 2)
    assert seen['disc_in'].shape == (2, 64)
    y, d = torch.tensor([0, 2]), torch.tensor([0, 1])
    total, logs = model.losses(out, y, d)
    torch.testing.assert_close(total, F.cross_entropy(out['joint'], y) + F.cross_entropy(out['domain'], d))


def test_reversal_makes_the_encoder_ascend_what_the_discriminator_descends():
    torch.manual_seed(3)
    net = model.PartNet(hidden=8).eval()
    x, y, d = torch.randn(3, 3, 40, 40), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1])

    def adv_loss(coeff):
        return F.cross_entropy(net(x, grl_coeff=coeff)['domain'], d)

    enc, disc = list(net.trunk.parameters()), list(net.discriminator.parameters())
    plain = torch.autograd.grad(adv_loss(-1.0), enc + disc)  # coeff -1: ordinary back-propagation
    net.zero_grad()
    model.losses(net(x, grl_coeff=0.5), y, d, lambda_adv=1.0)[0].backward()
    # The discriminator follows the plain gradient of Ladv; the trunk gets Ladv's gradient scaled by -0.5.
    for p, g in zip(disc, plain[len(enc):]):
        torch.testing.assert_close(p.grad, g)
    adv_trunk_grad = torch.autograd.grad(adv_loss(0.5), enc)
    for g_rev, g in zip(adv_trunk_grad, plain[:len(enc)]):
        torch.testing.assert_close(g_rev, -0.5 * g)
    # One small descent step on the trunk alone raises Ladv; one on the discriminator alone lowers it.
    before = adv_loss(1.0).item()
    for params in (enc, disc):
        grads = torch.autograd.grad(adv_loss(1.0), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 1e-3 * g
        after = adv_loss(1.0).item()
        assert (after > before) if params is enc else (after < before)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p += 1e-3 * g

import pytest
import torch

from tbfast.errors import UserError
from tbfast.models import Classifier, ProjectionHead, build_backbone, pool_time

CL = torch.channels_last_3d


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forward(model, x):
    model.eval()
    with torch.no_grad():
        return model(x.contiguous(memory_format=CL))


@pytest.mark.parametrize("frames,tp", [(16, 4), (8, 2)])
@pytest.mark.parametrize("size", [32, 48])
def test_tiny_shapes(frames, tp, size):
    m = build_backbone("tiny")
    assert 3e5 <= sum(p.numel() for p in m.parameters()) <= 1e6
    assert _forward(m, torch.randn(2, 3, frames, size, size)).shape == (2, m.feature_dim, tp)


@pytest.fixture(scope="module")
def r3d18():
    return build_backbone("r3d18").eval()


@pytest.mark.parametrize("frames,tp", [(16, 4), (8, 2)])
@pytest.mark.parametrize("size", [32, 48])
def test_r3d18_tclr_shapes(r3d18, frames, tp, size):
    assert r3d18.feature_dim == 512
    assert _forward(r3d18, torch.randn(1, 3, frames, size, size)).shape == (1, 512, tp)


def test_r3d18_tclr_layer4_change():
    tclr, plain = build_backbone("r3d18"), build_backbone("r3d18", tclr=False)
    conv = tclr.layer4[0].conv1[0]
    assert conv.stride == (1, 2, 2) and conv.dilation == (2, 1, 1) and conv.padding == (2, 1, 1)
    assert tclr.layer4[0].downsample[0].stride == (1, 2, 2)
    assert plain.layer4[0].conv1[0].stride == (2, 2, 2)
    assert _forward(plain, torch.randn(1, 3, 16, 32, 32)).shape == (1, 512, 2)  # torchvision's own


def test_r50_small_forward():
    m = build_backbone("r50")
    assert m.feature_dim == 2048
    assert not any("head" in type(b).__name__.lower() for b in m.blocks)
    assert _forward(m, torch.randn(1, 3, 16, 32, 32)).shape == (1, 2048, 4)


@pytest.mark.parametrize("name", ["tiny", "r3d18"])
def test_channels_last_equals_contiguous(name):
    torch.manual_seed(0)
    m = build_backbone(name)
    conv = next(p for p in m.parameters() if p.dim() == 5)
    assert conv.is_contiguous(memory_format=CL)
    x = torch.randn(2, 3, 16, 32, 32)
    out_cl = _forward(m, x)
    m_c = build_backbone(name, channels_last=False)
    m_c.load_state_dict(m.state_dict())
    m_c.eval()
    with torch.no_grad():
        out_c = m_c(x.contiguous())
    torch.testing.assert_close(out_cl, out_c, rtol=1e-4, atol=1e-4)


def test_unknown_backbone():
    with pytest.raises(UserError):
        build_backbone("vit")


def test_projection_head():
    head = ProjectionHead(64)
    assert head.fc1.out_features == 512 and head.fc1.bias is not None and head.fc2.bias is None
    x = torch.randn(6, 4, 64)
    z = head(x)  # temporal slices: BN over all 24 rows
    assert z.shape == (6, 4, 128)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(6, 4))
    assert head(x.mean(1)).shape == (6, 128)
    head.eval()  # same weights for every slice
    torch.testing.assert_close(head(x)[:, 2], head(x[:, 2]))


def test_classifier_and_pool_time():
    feats = torch.randn(3, 32, 4)
    pooled = pool_time(feats)
    torch.testing.assert_close(pooled, feats.mean(-1))
    clf = Classifier(32, 7)
    assert clf.dropout.p == 0.5
    assert clf(pooled).shape == (3, 7)

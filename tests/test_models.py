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


@pytest.mark.parametrize("width", [8, 16])
def test_tiny_width(width):
    m = build_backbone("tiny", width=width)
    assert m.feature_dim == 8 * width
    assert [b.conv1.out_channels for b in (m.layer1, m.layer2, m.layer3, m.layer4)] == [width * k for k in (1, 2, 4, 8)]
    assert _forward(m, torch.randn(2, 3, 16, 32, 32)).shape == (2, 8 * width, 4)
    # 0 is the default width, 16
    assert build_backbone("tiny", width=0).feature_dim == build_backbone("tiny").feature_dim == 128


def test_width_is_for_the_tiny_backbone_only_and_old_fingerprints_hold():
    from tbfast.engine.config import resolve
    from tbfast.engine.recipe import fingerprint

    with pytest.raises(UserError, match="tiny backbone only"):
        resolve("invariant", "ucf101_r3d18", {"model": {"width": 8}})
    with pytest.raises(UserError, match="model.width"):
        resolve("invariant", "synthetic_tiny", {"model": {"width": -1}})
    cfg = resolve("invariant", "synthetic_tiny")
    assert cfg.model.width == 0
    assert fingerprint(resolve("invariant", "synthetic_tiny", {"model": {"width": 8}})) != fingerprint(cfg)

    class Before:  # a config of a version without the option: no model.width at all
        def to_dict(self):
            d = cfg.to_dict()
            del d["model"]["width"]
            return d

    assert fingerprint(cfg) == fingerprint(Before())


def test_the_demo_preset_is_the_half_width_tiny_model_at_32_px_with_three_seeds(capsys):
    from tbfast.cli import main
    from tbfast.engine.config import DEMO_PRESET, STAGES, resolve

    for stage in STAGES:
        cfg = resolve(stage, DEMO_PRESET)
        assert (cfg.model.backbone, cfg.model.width, cfg.data.size, cfg.recipe.seeds) == ("tiny", 8, 32, 3)
    # the same recipe as the longer synthetic_tiny preset apart from the model's width, the size, the
    # epochs and how often checkpoints are written
    quick, tiny = resolve("student", DEMO_PRESET).to_dict(), resolve("student", "synthetic_tiny").to_dict()
    for d in (quick, tiny):
        d.pop("preset")
        d["model"].pop("width")
        d["data"].pop("size")
        d["train"].pop("epochs")
        d["train"].pop("save_every")
    assert quick == tiny
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert f"{DEMO_PRESET} without --data" in " ".join(capsys.readouterr().out.split())


def test_a_backbone_of_another_width_is_refused_with_a_clear_error():
    from tbfast.engine.config import resolve
    from tbfast.engine.nets import ClassNet, SSLNet, load_backbone

    narrow = SSLNet(resolve("invariant", "synthetic_tiny", {"model": {"width": 8}}).model)
    wide = ClassNet(resolve("finetune", "synthetic_tiny").model, 6)
    with pytest.raises(UserError, match="model.width"):
        load_backbone(wide, {"model": narrow.state_dict()}, "ssl.pt")
    same = ClassNet(resolve("finetune", "synthetic_tiny", {"model": {"width": 8}}).model, 6)
    load_backbone(same, {"model": narrow.state_dict()}, "ssl.pt")
    assert torch.equal(same.backbone.stem[0].weight, narrow.backbone.stem[0].weight)

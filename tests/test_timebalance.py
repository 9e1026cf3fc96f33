import pytest
import torch
import torch.nn.functional as F

import _naive_losses as naive
from tbfast.timebalance import CONSTANT_SCORE, mix_teachers, normalize_scores, temporal_similarity


def test_temporal_similarity_matches_naive():
    g = torch.Generator().manual_seed(0)
    z_inv = torch.randn(5, 4, 16, generator=g, dtype=torch.float64)
    z_dis = torch.randn(5, 4, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(temporal_similarity(z_inv, z_dis), naive.similarity(z_inv, z_dis))


def test_temporal_similarity_hand_values():
    same = torch.randn(1, 1, 8).expand(1, 4, 8)
    ortho = torch.eye(8)[:4].unsqueeze(0)
    assert temporal_similarity(same, same).item() == pytest.approx(1.0, abs=1e-6)
    assert temporal_similarity(ortho, ortho).item() == pytest.approx(0.0, abs=1e-6)
    assert temporal_similarity(same, ortho).item() == pytest.approx(0.5, abs=1e-6)  # average of both teachers
    # scale does not matter (cosine), unit inputs are fine too
    z = torch.randn(3, 4, 8)
    torch.testing.assert_close(temporal_similarity(3 * z, z), temporal_similarity(F.normalize(z, dim=-1), z))


def test_normalize_scores_min_max():
    s = normalize_scores(torch.tensor([0.2, 0.6, 0.4, 1.0]))
    torch.testing.assert_close(s, torch.tensor([0.0, 0.5, 0.25, 1.0]))
    assert normalize_scores([1, 3]).tolist() == [0.0, 1.0]  # ints and lists accepted


@pytest.mark.parametrize("raw", [[0.7, 0.7, 0.7], [1.0], [0.0, 0.0]])
def test_normalize_scores_constant_input_is_even_mix(raw):
    s = normalize_scores(torch.tensor(raw))
    assert torch.all(s == CONSTANT_SCORE) and CONSTANT_SCORE == 0.5


def test_normalize_scores_edge_cases():
    assert normalize_scores(torch.tensor([])).numel() == 0
    with pytest.raises(ValueError):
        normalize_scores(torch.tensor([0.1, float("nan")]))


def test_mix_teachers():
    p_inv = torch.softmax(torch.randn(3, 5), -1)
    p_dis = torch.softmax(torch.randn(3, 5), -1)
    torch.testing.assert_close(mix_teachers(p_inv, p_dis, torch.ones(3)), p_inv)
    torch.testing.assert_close(mix_teachers(p_inv, p_dis, 0.0), p_dis)
    s = torch.tensor([0.0, 0.5, 1.0])
    mixed = mix_teachers(p_inv, p_dis, s)
    torch.testing.assert_close(mixed[1], 0.5 * (p_inv[1] + p_dis[1]))
    torch.testing.assert_close(mixed.sum(-1), torch.ones(3))

"""The suite's figure locked to the authors' AutoAttack (Croce & Hein, package pyautoattack): on
the same tiny model and images, the suite's per-image robust set must be a subset of (or equal
to) the one `AutoAttack(version="standard")` leaves — all four attacks as a cascade, and each
attack alone — with the standard version's own settings (100 APGD steps, 9 target classes,
5000 Square queries). A control shows the comparison catches a weakened suite.

10 classes (the standard version's 9 target classes need them), 8x8 images, a few dozen of
them: a few seconds per attack on a CPU."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.attacks.autoattack import AUTHORS_NAMES, SUITE_ATTACKS, AttackSuite

pytest.importorskip("pyautoattack")
from pyautoattack import AutoAttack  # noqa: E402

CLASSES, SIZE, IMAGES, EPS = 10, 8, 24, 8 / 255


def prototype_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One random 8x8 colour prototype per class, at half contrast, plus pixel noise: at 8/255
    some images are robust and some are not, so both sets have members."""
    prototypes = torch.rand(CLASSES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    images = 0.5 * prototypes[labels] + 0.25 + 0.12 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    return images.clamp(0, 1), labels


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, CLASSES))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = prototype_data(1024, seed=0)
    for _ in range(200):
        optimiser.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimiser.step()
    return net.eval()


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    return prototype_data(IMAGES, seed=1)


def authors_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str]) -> torch.Tensor:
    """Per image, correct after the authors' standard version restricted to `attacks` (as their
    run_standard_evaluation_individual restricts it), one batch, seed 0."""
    logging.getLogger("auto-attack").setLevel(logging.ERROR)  # their progress lines
    authors = AutoAttack(model, norm="Linf", eps=EPS, version="standard", device="cpu", seed=0)
    authors.attacks_to_run = [AUTHORS_NAMES[a] for a in attacks]
    adversarial, _ = authors.run_standard_evaluation(x, y, batch_size=len(y))
    with torch.no_grad():
        return model(adversarial).argmax(dim=1) == y


def test_the_suite_uses_the_authors_standard_settings(model):
    """Every hyper-parameter of the suite's attacks, read back against the objects the authors'
    AutoAttack(version="standard") builds."""
    theirs = AutoAttack(model, norm="Linf", eps=EPS, version="standard", device="cpu", seed=0)
    suite = AttackSuite(EPS, "autoattack")
    ours = {name: suite._build(name, model, CLASSES, 0, torch.device("cpu")).__self__ for name in SUITE_ATTACKS}
    assert [AUTHORS_NAMES[a] for a in SUITE_ATTACKS] == theirs.attacks_to_run
    fields = {
        "apgd_ce": (theirs.apgd, ["n_iter", "n_restarts", "eps", "norm", "loss", "eot_iter", "thr_decr", "n_iter_2", "n_iter_min", "size_decr"]),
        "apgd_t": (theirs.apgd_targeted, ["n_iter", "n_restarts", "eps", "norm", "loss", "eot_iter", "thr_decr", "n_target_classes"]),
        "fab_t": (theirs.fab, ["n_iter", "n_restarts", "eps", "norm", "alpha_max", "eta", "beta", "n_target_classes"]),
        "square": (theirs.square, ["n_queries", "n_restarts", "eps", "norm", "p_init", "loss", "rescale_schedule"]),
    }  # fmt: skip
    for name, (reference, names) in fields.items():
        for field in names:
            assert getattr(ours[name], field) == getattr(reference, field), f"{name}.{field}"
    assert ours["apgd_ce"].loss == "ce" and ours["fab_t"].targeted  # set by their run, per attack


@pytest.mark.parametrize("attacks", [list(SUITE_ATTACKS)] + [[a] for a in SUITE_ATTACKS], ids=lambda a: "+".join(a))
def test_suite_robust_set_is_within_the_authors(model, images, attacks):
    x, y = images
    ours = AttackSuite(EPS, "autoattack", attacks=attacks).run(model, x, y)
    theirs = authors_robust(model, x, y, attacks)
    escaped = (ours.robust & ~theirs).nonzero().flatten().tolist()
    assert not escaped, f"images robust to the suite ({'+'.join(attacks)}) but not to the authors' code: {escaped}"
    # Not vacuous: the authors' attacks leave some images and fool others.
    assert 0 < int(theirs.sum()) < int(ours.clean.sum())


def test_the_comparison_catches_a_weakened_suite(model, images):
    """The control: APGD-CE cut from 100 steps to 1 keeps images robust that the authors' APGD-CE
    fools, and the subset assertion above would name them."""
    x, y = images
    weak = AttackSuite(EPS, "autoattack", attacks=["apgd_ce"], apgd_steps=1).run(model, x, y)
    theirs = authors_robust(model, x, y, ["apgd_ce"])
    assert (weak.robust & ~theirs).any()

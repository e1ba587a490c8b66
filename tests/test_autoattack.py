"""The AutoAttack-grade suite (lit_vision.attacks.autoattack) on its own and inside
AdversarialEvaluation, the headline test/robust_top1, and the "no attack above clean" check.
Tiny models, tiny images, few steps (autoattack_lite with smaller overrides)."""

from __future__ import annotations

import json
import os
import sys
import warnings

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.attacks.autoattack import SUITES, AttackSuite
from lit_vision.callbacks.adversarial_eval import HEADLINE, TABLE_NAME, AdversarialEvaluation
from lit_vision.errors import LitVisionError

pytest.importorskip("torchattacks")

SIZE, CLASSES = 8, 4
FEW = dict(apgd_steps=5, fab_steps=5, square_queries=30)  # a small custom suite for speed


def brightness_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes differ in mean brightness by 0.12, each image shifted by up to 0.06, plus pixel
    noise: learnable in a few steps, partly robust at 12/255 and mostly not at 16/255."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    base = (0.2 + 0.12 * labels + 0.06 * torch.rand(n, generator=g)).view(-1, 1, 1, 1)
    return (base + 0.2 * torch.rand(n, 3, SIZE, SIZE, generator=g)).clamp(0, 1), labels


def tiny_net(batchnorm: bool = False) -> nn.Module:
    layers = [nn.Conv2d(3, 8, 3, padding=1)] + ([nn.BatchNorm2d(8)] if batchnorm else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, CLASSES))


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    net = tiny_net()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-2)
    x, y = brightness_data(256)
    for _ in range(150):
        optimiser.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimiser.step()
    return net.eval()


# ------------------------------------------------------------------ the suite alone
def test_standard_settings_reach_torchattacks():
    """RobustBench's standard version on the torchattacks engine: 100 steps (not torchattacks'
    AutoAttack's 10), 9 target classes or all but one when fewer, 5000 Square queries on the
    authors' schedule (torchattacks rescales it by default)."""
    suite = AttackSuite(8 / 255, "autoattack", engine="torchattacks")
    assert suite.label == "autoattack" and SUITES["autoattack"].apgd_steps == 100
    net, cpu = nn.Linear(2, 2), torch.device("cpu")
    built = {name: suite._build(name, net, 20, 0, cpu) for name in suite.attacks}
    assert built["apgd_ce"].steps == 100 and built["apgd_ce"].loss == "ce"
    assert built["apgd_t"].steps == 100 and built["apgd_t"].n_target_classes == 9
    assert built["fab_t"].steps == 100 and built["fab_t"].multi_targeted and built["fab_t"].n_target_classes == 9
    assert built["square"].n_queries == 5000 and not built["square"].rescale_schedule
    assert all(attack.eps == pytest.approx(8 / 255) for attack in built.values())
    assert suite._build("apgd_t", net, 4, 0, cpu).n_target_classes == 3
    assert suite._build("fab_t", net, 4, 0, cpu).n_target_classes == 3
    # The authors' engine clips the same way (their code would index past 4 logits).
    authors = AttackSuite(8 / 255, "autoattack")
    assert authors._build("apgd_t", net, 4, 0, cpu).__self__.n_target_classes == 3
    assert authors._build("fab_t", net, 4, 0, cpu).__self__.n_target_classes == 3


def test_lite_and_overrides_are_labelled_honestly():
    lite = AttackSuite(8 / 255, "autoattack_lite")
    assert lite.label == "autoattack_lite" and "20 steps" in repr(lite) and "1000 queries" in repr(lite)
    assert AttackSuite(8 / 255, "autoattack", apgd_steps=10).label == "custom"
    assert AttackSuite(8 / 255, "autoattack", apgd_steps=100).label == "autoattack"  # the same settings


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(suite="autoattack_full"), "autoattack_full"),
        (dict(attacks=["apgd_ce", "cw"]), "'cw' unknown"),
        (dict(attacks=["square", "square"]), "at most once"),
        (dict(epsilon=8.0), "epsilon must be in"),
        (dict(apgd_steps=0), "apgd_steps"),
        (dict(engine="cleverhans"), "engine 'cleverhans'"),
    ],
)
def test_bad_suite_arguments_name_the_culprit(kwargs, match):
    options = dict(epsilon=8 / 255, suite="autoattack") | kwargs
    with pytest.raises(LitVisionError, match=match):
        AttackSuite(**options)


def test_missing_torchattacks_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks now raises ImportError
    with pytest.raises(LitVisionError, match=r"torchattacks.*lit-vision\[attacks\]"):
        AdversarialEvaluation(suite="autoattack", suite_engine="torchattacks")
    AdversarialEvaluation(suite="autoattack")  # the authors' engine does not need it
    AdversarialEvaluation(suite="none")  # without the suite, nothing is needed


def test_missing_pyautoattack_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(LitVisionError, match=r"pyautoattack.*lit-vision\[attacks\]"):
        AdversarialEvaluation(suite="autoattack")
    # The authors' checks need it whatever the engine; without them torchattacks alone will do.
    with pytest.raises(LitVisionError, match="pyautoattack"):
        AdversarialEvaluation(suite="autoattack", suite_engine="torchattacks")
    AdversarialEvaluation(suite="autoattack", suite_engine="torchattacks", autoattack_checks=False)


def test_cascade_attacks_only_the_survivors(trained):
    x, y = brightness_data(48, seed=1)
    x = x.contiguous(memory_format=torch.channels_last)  # as the CPU loader delivers batches
    # At 0.5 APGD-CE fools every image: the cascade then runs nothing more.
    cascade = AttackSuite(0.5, "autoattack_lite", **FEW).run(trained, x, y)
    first, *later = cascade.outcomes
    assert first.attacked == int(cascade.clean.sum()) > 30 and first.fooled == first.attacked
    assert all(o.attacked == 0 and o.forwards == 0 for o in later)
    assert not cascade.robust.any()
    # Each attack on every clean-correct image instead: every one of them runs, at full cost.
    standalone = AttackSuite(0.5, "autoattack_lite", cascade=False, **FEW).run(trained, x, y)
    assert all(o.attacked == first.attacked and o.forwards > 0 for o in standalone.outcomes)


def test_fab_runs_on_a_channels_last_batch(trained):
    """torchattacks' FAB (3.5) views the input gradient as (B, C·H·W), which fails for the
    channels-last batches the CPU loaders deliver ('view size is not compatible'); the suite
    attacks a contiguous copy. The control shows the failure is real with the installed
    torchattacks (a release that fixes it makes the control moot, not the test wrong)."""
    import torchattacks

    x, y = brightness_data(16, seed=1)
    x = x.contiguous(memory_format=torch.channels_last)
    keep = trained(x).argmax(dim=1) == y  # FAB only reaches its gradient step on correct images
    raw = torchattacks.FAB(trained, norm="Linf", eps=4 / 255, steps=2, n_classes=CLASSES, multi_targeted=True)
    try:
        raw(x[keep], y[keep])
    except RuntimeError as error:
        assert "view size is not compatible" in str(error)
    result = AttackSuite(4 / 255, "autoattack", attacks=["fab_t"], fab_steps=2, engine="torchattacks").run(trained, x, y)
    (fab,) = result.outcomes
    assert fab.attacked == int(keep.sum()) > 0 and fab.gradient_forwards > 0


def test_cascade_is_a_running_worst_case_below_each_attack(trained):
    x, y = brightness_data(48, seed=1)
    result = AttackSuite(16 / 255, "autoattack_lite", **FEW).run(trained, x, y)
    survivors = int(result.clean.sum())
    for outcome in result.outcomes:
        assert outcome.attacked == survivors  # the images still robust, and only those
        survivors -= outcome.fooled
        assert int(result.correct[outcome.name].sum()) == survivors
    assert int(result.robust.sum()) == survivors
    assert result.outcomes[0].fooled > 0, "16/255 should fool some images of the tiny model"

    standalone = AttackSuite(16 / 255, "autoattack_lite", cascade=False, **FEW).run(trained, x, y)
    every = torch.stack(list(standalone.correct.values())).all(dim=0)
    assert torch.equal(standalone.robust, every)
    for name, correct in standalone.correct.items():
        assert not (standalone.robust & ~correct).any(), name  # worst case <= each attack, per image
        assert not (correct & ~standalone.clean).any(), name  # and each attack <= clean
    # The worst-case images: inside the ball, and misclassified wherever the image was fooled.
    assert (result.images - x).abs().max() <= 16 / 255 + 1e-5
    fooled = result.clean & ~result.robust
    assert (trained(result.images[fooled]).argmax(1) != y[fooled]).all()


def test_a_perturbation_outside_the_ball_is_refused_naming_the_attack(trained):
    suite = AttackSuite(4 / 255, "autoattack_lite", attacks=["apgd_ce", "apgd_t"], cascade=False, **FEW)
    build = suite._build

    def broken(name, model, num_classes, seed, device):
        if name != "apgd_t":
            return build(name, model, num_classes, seed, device)
        return lambda images, labels: (images + 3 * suite.epsilon).clamp(0, 1)  # leaves the ball

    suite._build = broken
    x, y = brightness_data(16, seed=2)
    with pytest.raises(RuntimeError, match="apgd_t left its budget"):
        suite.run(trained, x * 0.5, y)  # x * 0.5: room to leave the ball without clamping


class DtypeSpy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.dtypes = net, set()

    def forward(self, x):
        out = self.net(x.to(next(self.net.parameters()).dtype))
        self.dtypes.add(out.dtype)
        return out


def test_fp32_eval_mode_and_caller_state_restored(trained):
    """bf16 weights and an enclosing bf16 autocast: the suite still runs in fp32, then puts the
    weights back bit for bit; BatchNorm statistics, train flags and the global RNG untouched."""
    net = tiny_net(batchnorm=True)
    net.load_state_dict(trained.state_dict(), strict=False)
    net = net.to(torch.bfloat16).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spy = DtypeSpy(net)
    x, y = brightness_data(16, seed=3)
    rng = torch.get_rng_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        AttackSuite(8 / 255, "autoattack_lite", **FEW).run(spy, x, y)
    assert spy.dtypes == {torch.float32}
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in net.modules())
    after = net.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


# ---------------------------------------------------------- inside AdversarialEvaluation
class Wrapped(L.LightningModule):
    """A plain module under test: logs test/top1 and returns its logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net(images.float() / 255 if images.dtype == torch.uint8 else images)

    def test_step(self, batch, batch_idx):
        logits = self(batch[0])
        self.log("test/top1", (logits.argmax(1) == batch[1]).float().mean(), on_epoch=True, batch_size=batch[1].shape[0])
        return logits


def make_trainer(tmp_path, callbacks, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks, inference_mode=True)  # fmt: skip
    return L.Trainer(**options | kwargs)


def loader(x, y, batch_size=16):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def test_suite_worst_case_is_never_above_the_projects_pgd(tmp_path, trained):
    x, y = brightness_data(64, seed=4)
    callback = AdversarialEvaluation(
        # A deliberately weak PGD (one step of ε/2: half the ball), so that the suite has images left to find.
        epsilon=12 / 255, num_steps=1, step_scale=0.5, targets=["true_label"], masking_checks=False,
        num_images=0, suite="autoattack_lite", suite_steps=5, suite_queries=30,
    )  # fmt: skip
    (results,) = make_trainer(tmp_path, [callback]).test(Wrapped(trained), dataloaders=loader(x, y))
    pgd = results["test/adv_top1_true_label"]
    assert results["test/robust_top1"] <= pgd <= results["test/top1"]
    assert results["test/robust_top1"] < pgd, "the suite should find what the weak PGD missed"
    # The suite alone (no PGD first) on the same images: also at or below the project's PGD.
    alone = AttackSuite(12 / 255, "autoattack_lite", apgd_steps=5, fab_steps=5, square_queries=30).run(trained, x, y)
    assert alone.robust.float().mean().item() <= pgd

    rows = {r["attack"]: r for r in callback.rows}
    assert callback.rows[0]["attack"] == HEADLINE and callback.rows[0]["top1"] == pytest.approx(results["test/robust_top1"])
    suite_rows = [r for r in callback.rows if r["attack"].endswith("(custom, cascade)") and "fooled" in r]
    assert [r["attack"].split()[0] for r in suite_rows] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert suite_rows[-1]["top1"] == pytest.approx(results["test/robust_top1"])
    assert suite_rows[0]["images"] == round(pgd * 64)  # the cascade starts from the PGD survivors
    for before, after in zip(suite_rows, suite_rows[1:]):
        assert after["images"] == before["images"] - before["fooled"]
    cost = rows["cost: suite (custom, cascade)"]
    assert cost["forwards"] == sum(r["forwards"] for r in suite_rows) > 0
    assert cost["seconds"] == pytest.approx(results["test/suite_seconds"], abs=1e-3)
    with open(callback.paths["json"]) as handle:
        assert "custom" in json.load(handle)["suite"]


class Threshold(nn.Module):
    """Two classes split by mean brightness at 0.5 (logits ±20·(s − 0.5)): an image just below
    0.5 labelled 0 is misclassified, and the least-likely attack (towards class 0, its true one)
    fixes it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        s = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([self.scale * s, -self.scale * s], dim=1)


def flattering_data() -> tuple[torch.Tensor, torch.Tensor]:
    levels = torch.tensor([0.9, 0.85, 0.1, 0.15, 0.48, 0.47, 0.9, 0.1])
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1])  # the 0.48/0.47 images: label 0, predicted 1
    return levels.view(-1, 1, 1, 1).expand(-1, 3, SIZE, SIZE).clone(), labels


@pytest.mark.parametrize("targets", [["least_likely", "true_label"], ["true_label"]])
def test_above_clean_check_trips_on_a_flattering_attack_only(tmp_path, targets):
    callback = AdversarialEvaluation(epsilon=8 / 255, num_steps=5, targets=targets, masking_checks=False, num_images=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (results,) = make_trainer(tmp_path, [callback]).test(Wrapped(Threshold()), dataloaders=loader(*flattering_data()))
    warned = [str(w.message) for w in caught if "above clean" in str(w.message)]
    (check,) = callback.checks
    assert check["check"] == "no attack leaves accuracy above clean"
    assert results["test/top1"] == pytest.approx(0.75)
    if "least_likely" in targets:
        assert results["test/adv_top1_least_likely"] == pytest.approx(1.0)  # "adversarial" above clean
        assert check["passed"] is False and "least_likely at 8/255, 5 steps: top-1 1.000 > clean 0.750" in check["detail"]
        assert "true_label" not in check["detail"]
        assert results["test/masking_warnings"] == 1
        assert len(warned) == 1 and "least_likely" in warned[0]
    else:
        assert check["passed"] is True and results["test/masking_warnings"] == 0 and not warned
    # The headline is never flattered: it stays at or below clean either way.
    assert callback.rows[0]["attack"] == HEADLINE and results["test/robust_top1"] <= results["test/top1"]


# ---------------------------------------------------------------------- slow: DDP, CLI
@pytest.mark.slow
def test_ddp_ranks_attack_their_shard_and_counts_are_reduced_once(tmp_path, monkeypatch, trained):
    x, y = brightness_data(32, seed=5)
    options = dict(epsilon=12 / 255, num_steps=3, targets=["true_label"], masking_checks=False, num_images=0,
                   suite="autoattack_lite", suite_steps=3, suite_queries=10)  # fmt: skip
    single = AdversarialEvaluation(**options)
    make_trainer(tmp_path / "one", [single]).test(Wrapped(trained), dataloaders=loader(x, y, 8))
    monkeypatch.delenv("MASTER_PORT", raising=False)
    ddp = AdversarialEvaluation(**options)
    make_trainer(tmp_path / "two", [ddp], devices=2, strategy="ddp_spawn").test(Wrapped(trained), dataloaders=loader(x, y, 8))
    # ddp_spawn returns rank 0's callback state through the written report.
    with open(tmp_path / "two" / f"{TABLE_NAME}.json") as handle:
        rows = {r["attack"]: r for r in json.load(handle)["rows"]}
    first = rows["apgd_ce (custom, cascade)"]
    one = {r["attack"]: r for r in single.rows}["apgd_ce (custom, cascade)"]
    # Without random starts the PGD survivors are the same images: the ranks' shards add up to them.
    assert first["images"] == one["images"] > 0


@pytest.mark.slow
def test_autoattack_config_through_the_cli(tmp_path, monkeypatch, tiny_config):
    """The documented line: lit-vision test --config <recipe> --config configs/autoattack.yaml
    --ckpt_path last prints clean, each attack, the worst case and the cascade's cost."""
    from lit_vision.cli import main

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(tiny_config), "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])
    small = [f"--trainer.callbacks.init_args.{k}" for k in ("suite", "suite_steps", "suite_queries")]
    main(["test", "--config", str(tiny_config), "--config", f"{configs}/autoattack.yaml", "--ckpt_path", "last",
          "--trainer.callbacks.init_args.max_images", "5", small[0], "autoattack_lite", small[1], "2", small[2], "10"])  # fmt: skip
    (report,) = (tmp_path / "logs" / "tiny" / "eval").glob(f"version_*/{TABLE_NAME}.json")
    written = json.loads(report.read_text())
    rows = [r["attack"] for r in written["rows"]]
    assert rows[:4] == [HEADLINE, "clean", "true_label", "least_likely"]
    assert written["max_images"] == 5 and {r["attack"]: r for r in written["rows"]}["cost: PGD targets"]["images"] == 5
    assert any(c["check"].startswith("AutoAttack: ") for c in written["checks"])
    for name in ("apgd_ce", "apgd_t", "fab_t", "square"):
        assert f"{name} (custom, cascade)" in rows
    assert "cost: suite (custom, cascade)" in rows and "cost: PGD targets" in rows


# ------------------------------------------------------------ the image budget: max_images
class Counting(Wrapped):
    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.seen: list[int] = []

    def test_step(self, batch, batch_idx):
        self.seen.append(len(batch[1]))
        return super().test_step(batch, batch_idx)


@pytest.mark.parametrize("batch_size", [16, 7, 20])
def test_max_images_attacks_exactly_the_first_n_images(tmp_path, trained, batch_size):
    """20 images whatever the batch size: the batch that crosses the budget is cut, the test
    stops after it, and test/top1 and the table are on those 20 images only."""
    x, y = brightness_data(45, seed=6)
    callback = AdversarialEvaluation(epsilon=8 / 255, num_steps=2, targets=["true_label"], masking_checks=False,
                                     num_images=0, max_images=20)  # fmt: skip
    module = Counting(trained)
    (results,) = make_trainer(tmp_path, [callback]).test(module, dataloaders=loader(x, y, batch_size))
    assert sum(module.seen) == 20 and len(module.seen) == -(-20 // batch_size)
    with torch.no_grad():
        first = (trained(x[:20]).argmax(1) == y[:20]).float().mean().item()
    assert results["test/top1"] == pytest.approx(first)
    assert {r["attack"]: r for r in callback.rows}["cost: PGD targets"]["images"] == 20
    with open(callback.paths["json"]) as handle:
        assert json.load(handle)["max_images"] == 20


def test_max_images_cannot_cut_a_tuple_batch(tmp_path, trained):
    x, y = brightness_data(32, seed=6)
    tuples = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, collate_fn=lambda b: tuple(torch.utils.data.default_collate(b))
    )
    options = dict(epsilon=8 / 255, num_steps=1, targets=["true_label"], masking_checks=False, num_images=0)
    with pytest.raises(LitVisionError, match="max_images 20 ends inside a test batch of 16.*tuple"):
        make_trainer(tmp_path, [AdversarialEvaluation(**options, max_images=20)]).test(Wrapped(trained), dataloaders=tuples)
    module = Counting(trained)  # a whole number of batches needs no cut
    make_trainer(tmp_path, [AdversarialEvaluation(**options, max_images=16)]).test(module, dataloaders=tuples)
    assert module.seen == [16]


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_bad_max_images_is_refused(value):
    with pytest.raises(LitVisionError, match="max_images must be an integer >= 1"):
        AdversarialEvaluation(max_images=value)


# ----------------------------------------------------------- the authors' AutoAttack checks
def test_authors_checks_print_beside_the_masking_checks(tmp_path, trained):
    x, y = brightness_data(24, seed=4)
    callback = AdversarialEvaluation(epsilon=12 / 255, num_steps=1, step_scale=0.5, targets=["true_label"],
                                     masking_checks=False, num_images=0, suite="autoattack_lite", suite_steps=3,
                                     suite_queries=20)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (results,) = make_trainer(tmp_path, [callback]).test(Wrapped(trained), dataloaders=loader(x, y, 8))
    checks = {c["check"]: c for c in callback.checks}
    assert checks["AutoAttack: deterministic model"]["passed"] is True
    assert checks["AutoAttack: logits, not probabilities"]["passed"] is True
    assert checks["AutoAttack: no zero gradients"]["passed"] is True
    assert checks["AutoAttack: no zero gradients in APGD-T"]["passed"] in (True, None)
    assert "AutoAttack: Square does not beat the white-box attacks" in checks
    # 4 classes: the standard version's 9 targets do not exist; the check says what the suite did.
    classes = checks["AutoAttack: enough classes for the targeted attacks"]
    assert classes["passed"] is False and "more target classes (9) than possible (3)" in classes["detail"]
    assert "with 3 target classes" in classes["detail"]
    assert any("The authors' AutoAttack check failed" in str(w.message) for w in caught)
    assert list(checks)[-1] == "no attack leaves accuracy above clean"
    assert results["test/masking_warnings"] >= 1
    with open(callback.paths["json"]) as handle:
        assert {c["check"] for c in json.load(handle)["checks"]} == set(checks)


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 0.05 * torch.randn_like(x))


class Softmaxed(Noisy):
    def forward(self, x):
        return self.net(x).softmax(dim=1)


class Quantised(Noisy):
    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)  # round has a zero gradient everywhere


class Adaptive(Noisy):
    def forward(self, x):
        with torch.enable_grad():  # a test-time-adaptive defence: one input-gradient step inside the forward
            probe = x.detach().requires_grad_()
            (step,) = torch.autograd.grad(self.net(probe).logsumexp(1).sum(), [probe])
        return self.net(x - 0.01 * step.sign())


@pytest.mark.parametrize(
    "wrapper, check, advice",
    [
        (Noisy, "deterministic model", 'version="rand"'),
        (Softmaxed, "logits, not probabilities", "without its final softmax"),
        (Adaptive, "no gradients inside the forward (dynamic defence)", "adaptive attack"),
        (Quantised, "no zero gradients", "zero gradient"),
    ],
)
def test_each_authors_check_names_what_it_found_and_what_to_run(trained, wrapper, check, advice):
    from lit_vision.attacks.autoattack_checks import model_checks

    if wrapper is Adaptive and sys.gettrace() is not None:
        pytest.skip("the dynamic-defence check does not run under a tracer (coverage, debugger)")
    x, y = brightness_data(16, seed=2)
    verdicts = {c["check"]: c for c in model_checks(wrapper(trained).eval(), x, y, ["apgd_ce", "square"])}
    assert verdicts[f"AutoAttack: {check}"]["passed"] is False
    assert advice in verdicts[f"AutoAttack: {check}"]["detail"]
    # The plain model passes the same check.
    plain = {c["check"]: c for c in model_checks(trained, x, y, ["apgd_ce", "square"])}
    assert plain[f"AutoAttack: {check}"]["passed"] is True


def test_square_check_flags_a_black_box_win_only():
    from lit_vision.attacks.autoattack_checks import square_check

    assert square_check({"clean": 0.9, "apgd_ce": 0.5, "apgd_t": 0.45, "square": 0.40})["passed"] is False
    assert square_check({"clean": 0.9, "apgd_ce": 0.5, "apgd_t": 0.45, "square": 0.45})["passed"] is True
    assert square_check({"clean": 0.9, "apgd_ce": 0.5})["passed"] is None


# ------------------------------------------- the cascade across test batches: suite_batch_size
def spy_on_suite_calls(monkeypatch) -> list[int]:
    """The number of images of every AttackSuite.run call, in order."""
    calls: list[int] = []
    run = AttackSuite.run

    def counted(self, model, images, labels, *args, **kwargs):
        calls.append(int(labels.shape[0]))
        return run(self, model, images, labels, *args, **kwargs)

    monkeypatch.setattr(AttackSuite, "run", counted)
    return calls


def test_queued_survivors_get_the_verdicts_of_per_batch_calls(trained):
    """The same images attacked 8 at a time or queued 64 at a time: the same verdict per image
    (this tiny model's verdicts hinge on no random draw), the same counts, 1 call instead of 8."""
    from lit_vision.attacks.suite_buffer import SuiteBuffer

    x, y = brightness_data(64, seed=4)
    suite = AttackSuite(12 / 255, "autoattack_lite", **FEW)
    per_batch = [suite.run(trained, x[i : i + 8], y[i : i + 8], key=(i,)) for i in range(0, 64, 8)]
    buffer = SuiteBuffer(suite, batch_size=64)
    queued = [d.result for i in range(0, 64, 8) for d in buffer.add(trained, x[i : i + 8], y[i : i + 8])]
    assert len(queued) == 1 and buffer.calls == 1 and not buffer.flush(trained)
    assert 0 < queued[0].robust.sum() < queued[0].clean.sum()  # some images fooled, some robust
    assert torch.equal(torch.cat([r.robust for r in per_batch]), queued[0].robust)
    for name in ("apgd_ce", "apgd_t", "fab_t", "square"):
        assert torch.equal(torch.cat([r.correct[name] for r in per_batch]), queued[0].correct[name])
        assert sum(o.fooled for r in per_batch for o in r.outcomes if o.name == name) == next(
            o.fooled for o in queued[0].outcomes if o.name == name
        )


@pytest.mark.parametrize(
    "cascade, attacks",
    # Standalone, Square meets images the gradient attacks fool: whether its 30 random squares do
    # too hinges on the draws, which differ with the batch; in the cascade it meets only survivors.
    [(True, ["apgd_ce", "apgd_t", "fab_t", "square"]), (False, ["apgd_ce", "apgd_t", "fab_t"])],
)
def test_suite_batch_size_leaves_every_figure_as_it_was_in_fewer_calls(tmp_path, trained, monkeypatch, cascade, attacks):
    """Through AdversarialEvaluation, test batches of 8: the suite per test batch (None), queued
    across batches 5 at a time (flushed inside the loop and at the end) or 256 at a time (all at
    the end of the test): the same logged metrics and table but the seconds, in fewer calls."""
    x, y = brightness_data(64, seed=4)
    calls = spy_on_suite_calls(monkeypatch)
    options = dict(epsilon=12 / 255, num_steps=1, step_scale=0.5, targets=["true_label"], masking_checks=False,
                   num_images=0, suite="autoattack_lite", suite_steps=5, suite_queries=30, suite_cascade=cascade,
                   suite_attacks=attacks)  # fmt: skip
    runs = {}
    for size in (None, 5, 256):
        calls.clear()
        callback = AdversarialEvaluation(**options, suite_batch_size=size)
        (results,) = make_trainer(tmp_path / str(size), [callback]).test(Wrapped(trained), dataloaders=loader(x, y, 8))
        untimed = [{k: v for k, v in row.items() if k != "seconds"} for row in callback.rows]
        runs[size] = (results, untimed, list(calls))
        with open(callback.paths["json"]) as handle:
            assert json.load(handle)["suite_batch_size"] == size
    (base, rows, per_batch_calls), entering = runs[None], runs[None][1][4]["images"]
    assert per_batch_calls == [8] * 8 and 5 < entering <= 64  # standalone: every clean-correct image
    for size in (5, 256):
        results, table, queued_calls = runs[size]
        assert {k: v for k, v in results.items() if k != "test/suite_seconds"} == {
            k: v for k, v in base.items() if k != "test/suite_seconds"
        }
        assert table == rows
        assert sum(queued_calls) == entering  # only the entering images are queued
        assert queued_calls == ([5] * (entering // 5) + ([entering % 5] if entering % 5 else []) if size == 5 else [entering])


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_suite_batch_size_is_refused(value):
    with pytest.raises(LitVisionError, match="suite_batch_size must be an integer >= 1 or null"):
        AdversarialEvaluation(suite="autoattack_lite", suite_batch_size=value)

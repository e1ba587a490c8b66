"""AutoAttack-grade evaluation (Croce & Hein 2020; RobustBench's standard), run as a per-image
worst-case cascade with its cost counted, on the authors' own attack code (`pyautoattack`) or
on torchattacks' port of it.

    from lit_vision.attacks.autoattack import AttackSuite
    suite = AttackSuite(epsilon=8 / 255, suite="autoattack")
    result = suite.run(model, images, labels)        # images in [0, 1] (or uint8), pixel space
    result.robust.float().mean()                     # per image: clean and every attack correct
    result.outcomes                                  # per attack: images attacked, fooled, cost

Pure torch (no Lightning). The attack code is an optional dependency (`pip install
'lit-vision[attacks]'`), imported when a suite is built, with a clear error without it.

Engines. `engine="autoattack"` (the default) runs the authors' attack classes from the
`pyautoattack` package (APGDAttack, APGDAttack_targeted, FABAttack_PT, SquareAttack) with the
standard version's settings and the authors' seeding (one seed for every attack of a run): on
the same images, with the PGD targets left out, the suite's robust set is then the authors'
`AutoAttack(version="standard").run_standard_evaluation` set, which tests/test_autoattack_agreement.py
checks, attack by attack and as a cascade. `engine="torchattacks"` runs torchattacks' port
(the suite's engine before): on the same tiny model it agreed with the authors' code on APGD-T
and FAB-T but not image for image on APGD-CE (other random starts) and Square (other random
squares), so a figure meant to stand beside published ones uses the authors' engine.

How it measures, as RobustBench does:
- the model in eval mode, in fp32 whatever its training precision (autocast off; parameters
  and buffers held in bf16/fp16 are cast to fp32 for the suite and cast back exactly after);
- L∞ in pixel space [0, 1] (lit_vision's models normalise inside their forward);
- the attacks, in order: APGD-CE, APGD-T (targeted DLR loss, one run per target class),
  FAB-T (targeted, one run per target class) and Square (score-based, black box);
- a cascade: each attack runs only on the images still robust (clean correct and not fooled by
  an earlier attack), so the worst case per image costs far less than every attack on every
  image; `cascade=False` runs each attack on every clean-correct image instead (its standalone
  accuracy, at the full cost);
- each adversarial batch is checked to lie in its ε-ball and in [0, 1], naming the attack if
  not (`check_within_budget`), and judged by one more forward pass of our own rather than by
  the attack's own bookkeeping.

Suites. `autoattack` is the standard version: APGD-CE 100 steps, APGD-T 100 steps × 9 target
classes, FAB-T 100 steps × 9 target classes, Square 5000 queries, one restart each (with
fewer than 10 classes, all but the true class are targets). torchattacks' own `AutoAttack`
wrapper is not used: it does not pass `steps` to its APGD attacks, which then run 10
iterations; its Square rescales the square-size schedule to the query budget
(`resc_schedule=True`), which the authors' standard version turns off, and so does this suite
on either engine. `autoattack_lite` is a cheaper, weaker variant, named so that no one takes it for
the standard: 20 steps, 3 target classes, 20 FAB steps, 1000 Square queries. Any override of
the settings makes the suite's label `custom`.

Cost. `forwards` counts images passed through the model, `gradient_forwards` those that
carried an input gradient (≈ the backward passes; FAB's targeted step takes one backward per
forward), `seconds` is wall time (synchronised on CUDA), `cpu_seconds` this process's CPU time
(on one intra-op thread, the work done, whatever else the machine runs).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from lit_vision.attacks.pgd import check_within_budget, eval_mode, gradients_enabled
from lit_vision.errors import LitVisionError
from lit_vision.utils.generators import keyed_seed
from lit_vision.utils.images import to_unit_float

__all__ = [
    "ENGINES",
    "SUITE_ATTACKS",
    "SUITES",
    "AttackOutcome",
    "AttackSuite",
    "SuiteResult",
    "SuiteSettings",
    "require_autoattack",
    "require_engine",
    "require_torchattacks",
    "run_suite",
]

SUITE_ATTACKS = ("apgd_ce", "apgd_t", "fab_t", "square")
ENGINES = ("autoattack", "torchattacks")
INSTALL_HINT = "pip install 'lit-vision[attacks]' (or pip install torchattacks)"
AUTOATTACK_HINT = "pip install 'lit-vision[attacks]' (or pip install pyautoattack)"
# The authors' names for the suite's attacks (AutoAttack's attacks_to_run).
AUTHORS_NAMES = {"apgd_ce": "apgd-ce", "apgd_t": "apgd-t", "fab_t": "fab-t", "square": "square"}


@dataclass(frozen=True)
class SuiteSettings:
    """The strength of a suite: iterations of APGD-CE/APGD-T, target classes of APGD-T/FAB-T,
    iterations of FAB-T, queries of Square. One restart each (RobustBench's standard version)."""

    apgd_steps: int
    target_classes: int
    fab_steps: int
    square_queries: int

    def describe(self) -> str:
        return (
            f"APGD-CE {self.apgd_steps} steps, APGD-T {self.apgd_steps} steps × {self.target_classes} targets, "
            f"FAB-T {self.fab_steps} steps × {self.target_classes} targets, Square {self.square_queries} queries"
        )


SUITES = {
    "autoattack": SuiteSettings(apgd_steps=100, target_classes=9, fab_steps=100, square_queries=5000),
    "autoattack_lite": SuiteSettings(apgd_steps=20, target_classes=3, fab_steps=20, square_queries=1000),
}


def require_torchattacks():
    """The torchattacks module, or a LitVisionError saying how to install it."""
    try:
        import torchattacks
    except ImportError as error:
        raise LitVisionError(
            f"The AutoAttack-grade suite's torchattacks engine needs the torchattacks package, which is not "
            f"installed ({error}): {INSTALL_HINT}, use engine autoattack, or leave the suite out (suite: none)."
        ) from None
    return torchattacks


def require_autoattack():
    """The authors' AutoAttack package (`pyautoattack`), or a LitVisionError saying how to install it."""
    try:
        import pyautoattack
        from pyautoattack import autopgd_base, checks, fab_pt, square  # noqa: F401 (the classes the suite runs)
    except ImportError as error:
        raise LitVisionError(
            f"The AutoAttack-grade suite's autoattack engine (the authors' code) needs the pyautoattack package, "
            f"which is not installed ({error}): {AUTOATTACK_HINT}, use engine torchattacks, or leave the suite out "
            "(suite: none)."
        ) from None
    return pyautoattack


def require_engine(engine: str):
    """The module of `engine` (one of ENGINES), or a LitVisionError naming what to install."""
    if engine not in ENGINES:
        raise LitVisionError(f"Unknown attack-suite engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    return require_autoattack() if engine == "autoattack" else require_torchattacks()


class MessageLog:
    """Stands in for the `logging.Logger` that the authors' attacks and checks write their warnings
    to (they call `logger.warning(text)`), keeping the texts so that the evaluation can show them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, message, *args, **kwargs) -> None:
        self.messages.append(str(message))

    def info(self, *args, **kwargs) -> None:  # progress lines: not warnings
        pass

    debug = info


@dataclass
class AttackOutcome:
    """What one attack of the suite did on one batch (or, summed, on a whole split)."""

    name: str
    attacked: int = 0  # images it was run on (the survivors, in a cascade)
    fooled: int = 0  # of those, images it made misclassified
    forwards: int = 0  # images passed through the model
    gradient_forwards: int = 0  # of those, with an input gradient (≈ backward passes)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: what a benchmark on a shared CPU compares


@dataclass
class SuiteResult:
    """Per image (bool tensors of shape (B,)) and per attack, on the batch given to `run`.

    `clean`: correct on the clean image (fp32, eval mode) and robust on entry (`robust` argument).
    `correct[name]`: in a cascade, still correct after that attack and every one before it (the
    running worst case); with cascade=False, correct under that attack alone.
    `robust`: correct under every attack (the per-image worst case).
    `images`: per image the adversarial image that fooled the model, else the clean image."""

    clean: torch.Tensor
    correct: dict[str, torch.Tensor]
    robust: torch.Tensor
    images: torch.Tensor
    outcomes: list[AttackOutcome] = field(default_factory=list)


class _Counted(nn.Module):
    """The model, counting the images that go through it (and those carrying input gradients)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.gradient_forwards = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        self.forwards += n
        if torch.is_grad_enabled() and images.requires_grad:
            self.gradient_forwards += n
        return self.model(images)


@contextlib.contextmanager
def float32(model: nn.Module, device: torch.device):
    """fp32 for the suite, whatever the training precision: autocast off, and floating-point
    parameters/buffers held in another precision cast to fp32 in place, cast back on exit
    (bf16/fp16 → fp32 → bf16/fp16 is exact, so the weights come back bit for bit)."""
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()]
    changed = [(t, t.dtype) for t in tensors if t.dtype != torch.float32]
    for tensor, _ in changed:
        tensor.data = tensor.data.float()
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        for tensor, dtype in changed:
            tensor.data = tensor.data.to(dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class AttackSuite:
    """The AutoAttack-grade cascade (see the module docstring).

    Args:
        epsilon: L∞ radius, pixel units of (0, 1] (8/255 is RobustBench's CIFAR budget).
        suite: "autoattack" (the standard version) or "autoattack_lite" (cheaper, weaker).
        attacks: which of apgd_ce, apgd_t, fab_t, square to run, in this order of the cascade.
        cascade: run each attack only on the images still robust (True, RobustBench's way) or
            on every clean-correct image (False: each attack's standalone accuracy, full cost).
        apgd_steps, target_classes, fab_steps, square_queries: overrides of the suite's
            settings (the label becomes "custom").
        seed: seed of the attacks' random draws: every attack of a call uses it, as the authors'
            code does (keyed further per call by `run`'s `key`).
        engine: "autoattack" (the authors' code, package pyautoattack) or "torchattacks".
    """

    def __init__(
        self,
        epsilon: float = 8 / 255,
        suite: str = "autoattack",
        attacks: list[str] | tuple[str, ...] = SUITE_ATTACKS,
        cascade: bool = True,
        apgd_steps: int | None = None,
        target_classes: int | None = None,
        fab_steps: int | None = None,
        square_queries: int | None = None,
        seed: int = 0,
        engine: str = "autoattack",
    ) -> None:
        if suite not in SUITES:
            raise LitVisionError(f"Unknown attack suite {suite!r}: choose one of {', '.join(SUITES)}.")
        if not 0 < epsilon <= 1:  # also rejects NaN
            raise LitVisionError(
                f"The attack suite's epsilon must be in (0, 1] (pixel units), got {epsilon} "
                "(8/255 ≈ 0.0314 is RobustBench's budget)."
            )
        attacks = [attacks] if isinstance(attacks, str) else list(attacks)
        unknown = [a for a in attacks if a not in SUITE_ATTACKS]
        if unknown or not attacks or len(set(attacks)) != len(attacks):
            raise LitVisionError(
                f"The attack suite's attacks must name each of {', '.join(SUITE_ATTACKS)} at most once, got {attacks}"
                + (f" ({', '.join(map(repr, unknown))} unknown)." if unknown else ".")
            )
        overrides = {
            "apgd_steps": apgd_steps,
            "target_classes": target_classes,
            "fab_steps": fab_steps,
            "square_queries": square_queries,
        }
        for name, value in overrides.items():
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise LitVisionError(f"The attack suite's {name} must be an integer >= 1 or null, got {value}.")
        require_engine(engine)  # fail here, at configuration time, rather than at the first batch
        self.engine = engine
        self.log = MessageLog()  # warnings the authors' attacks wrote (zero gradients in APGD-T)
        settings = replace(SUITES[suite], **{k: int(v) for k, v in overrides.items() if v is not None})
        self.label = suite if settings == SUITES[suite] else "custom"
        self.settings = settings
        self.epsilon = float(epsilon)
        self.attacks = attacks
        self.cascade = bool(cascade)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (
            f"AttackSuite({self.label}: {', '.join(self.attacks)}; {self.settings.describe()}; "
            f"epsilon {self.epsilon:.5g} (≈{self.epsilon * 255:.3g}/255); "
            f"{'cascade' if self.cascade else 'each attack on every clean-correct image'}; engine {self.engine})"
        )

    def _build(self, name: str, model: nn.Module, num_classes: int, seed: int, device: torch.device):
        """One attack with the suite's settings, as a function (images, labels) -> adversarial images.
        The other hyper-parameters are the authors' standard version's (AutoAttack._set_version):
        rho 0.75 and one EOT draw for APGD, FAB alpha_max 0.1, eta 1.05, beta 0.9, Square p_init 0.8
        with the margin loss and no rescaled schedule; tests/test_autoattack_agreement.py reads them
        back from `AutoAttack(version="standard")`."""
        if self.engine == "autoattack":
            return self._build_authors(name, model, num_classes, seed, device)
        ta, s, eps = require_torchattacks(), self.settings, self.epsilon
        targets = min(s.target_classes, num_classes - 1)
        if name == "apgd_ce":
            return ta.APGD(model, norm="Linf", eps=eps, steps=s.apgd_steps, n_restarts=1, seed=seed, loss="ce")
        if name == "apgd_t":
            attack = ta.APGDT(model, norm="Linf", eps=eps, steps=s.apgd_steps, n_restarts=1, seed=seed, n_classes=num_classes)
            attack.n_target_classes = targets  # torchattacks sets n_classes - 1; RobustBench uses 9
            return attack
        if name == "fab_t":
            attack = ta.FAB(
                model, norm="Linf", eps=eps, steps=s.fab_steps, n_restarts=1, seed=seed, multi_targeted=True, n_classes=num_classes
            )
            attack.n_target_classes = targets
            return attack
        # resc_schedule=False: the standard version's Square (torchattacks defaults to True).
        return ta.Square(model, norm="Linf", eps=eps, n_queries=s.square_queries, n_restarts=1, seed=seed, resc_schedule=False)

    def _build_authors(self, name: str, model: nn.Module, num_classes: int, seed: int, device: torch.device):
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
        from pyautoattack.fab_pt import FABAttack_PT
        from pyautoattack.square import SquareAttack

        s, eps = self.settings, self.epsilon
        # With fewer than 10 classes the standard's 9 targets do not exist (the authors' code
        # would index past the logits): all but the true class, which the AutoAttack checks name.
        targets = min(s.target_classes, num_classes - 1)
        common = dict(norm="Linf", eps=eps, seed=seed, verbose=False, device=device)
        if name == "apgd_ce":
            attack = APGDAttack(model, n_iter=s.apgd_steps, n_restarts=1, loss="ce", eot_iter=1, rho=0.75, logger=self.log, **common)
        elif name == "apgd_t":
            attack = APGDAttack_targeted(
                model, n_iter=s.apgd_steps, n_restarts=1, n_target_classes=targets, eot_iter=1, rho=0.75, logger=self.log, **common
            )
        elif name == "fab_t":
            attack = FABAttack_PT(model, n_iter=s.fab_steps, n_restarts=1, targeted=True, n_target_classes=targets, **common)
        else:
            attack = SquareAttack(model, n_queries=s.square_queries, p_init=0.8, n_restarts=1, resc_schedule=False, **common)
        return attack.perturb

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        robust: torch.Tensor | None = None,
        key: tuple[int, ...] = (),
    ) -> SuiteResult:
        """Attack one batch. `images`: (B, C, H, W) float in [0, 1] or uint8; `robust`: images
        already fooled elsewhere (False) are not attacked and count as not robust; `key`
        (e.g. (batch index, rank)) makes each call's random draws its own. The caller's global
        RNG state is left as it was (torchattacks reseeds it)."""
        if images.ndim != 4:
            raise LitVisionError(f"The attack suite expects a batch of images (B, C, H, W), got shape {tuple(images.shape)}.")
        device = images.device
        rng_devices = [device] if device.type == "cuda" else []
        with gradients_enabled(), eval_mode(model), float32(model, device), torch.random.fork_rng(devices=rng_devices):
            # The wrapper too must be in eval mode: torchattacks puts back the mode it found on
            # the module it was given (a new module is in train mode), which would switch the
            # model to train mode — BatchNorm statistics updated — after the first attack.
            counted = _Counted(model).eval()
            # clone(): leaves inference mode and never writes into the caller's tensors; contiguous:
            # FAB views gradients as (B, C·H·W), which a channels-last batch's gradient refuses.
            clean = to_unit_float(images.detach()).float().clone(memory_format=torch.contiguous_format)
            labels = labels.detach().clone().long()
            with torch.no_grad():
                logits = model(clean)
            num_classes = logits.shape[1]
            if num_classes < 2:
                raise LitVisionError(f"The attack suite needs a model with at least 2 classes, got {num_classes}.")
            if "apgd_t" in self.attacks and num_classes < 4:
                raise LitVisionError(
                    f"APGD-T's targeted DLR loss needs at least 4 classes, the model has {num_classes}: leave apgd_t "
                    "out of the suite's attacks (suite_attacks: [apgd_ce, fab_t, square])."
                )
            # One seed for every attack of the call, as the authors' AutoAttack seeds each attack.
            seed = keyed_seed(self.seed, *key) % 2**31 if key else self.seed
            entry = logits.argmax(dim=1) == labels
            if robust is not None:
                entry = entry & robust.to(device=device, dtype=torch.bool)
            worst = entry.clone()
            adversarial = clean.clone()
            correct: dict[str, torch.Tensor] = {}
            outcomes = []
            for name in self.attacks:
                todo = worst if self.cascade else entry
                index = todo.nonzero().flatten()
                outcome = AttackOutcome(name, attacked=int(index.numel()))
                still = torch.zeros_like(entry)
                if index.numel():
                    counted.forwards = counted.gradient_forwards = 0
                    _synchronize(device)
                    start, cpu_start = time.perf_counter(), time.process_time()
                    attack = self._build(name, counted, num_classes, seed, device)
                    # The authors' AutoAttack runs its attacks under no_grad (they enable gradients
                    # where they need them): Square's and FAB's many plain forwards then build no graph.
                    with torch.no_grad() if self.engine == "autoattack" else contextlib.nullcontext():
                        x = attack(clean[index], labels[index]).detach()
                    check_within_budget(x, clean[index], self.epsilon, attack=name)
                    with torch.no_grad():
                        held = counted(x).argmax(dim=1) == labels[index]
                    _synchronize(device)
                    outcome.seconds = time.perf_counter() - start
                    outcome.cpu_seconds = time.process_time() - cpu_start
                    outcome.forwards, outcome.gradient_forwards = counted.forwards, counted.gradient_forwards
                    outcome.fooled = int((~held).sum())
                    still[index] = held
                    newly = index[~held & worst[index]]  # first fooling image per image kept
                    adversarial[newly] = x[~held & worst[index]]
                    worst[index] = worst[index] & held
                correct[name] = (worst.clone() if self.cascade else still)
                outcomes.append(outcome)
        return SuiteResult(clean=entry, correct=correct, robust=worst, images=adversarial, outcomes=outcomes)


def run_suite(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float = 8 / 255,
    suite: str = "autoattack",
    **options,
) -> SuiteResult:
    """`AttackSuite(epsilon, suite, **options).run(model, images, labels)` in one call."""
    return AttackSuite(epsilon, suite, **options).run(model, images, labels)

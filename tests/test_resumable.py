"""The resumable training loader: its order is epoch_order's, its state counts the batches it
handed out, and a loader rebuilt from that state yields exactly the rest of the epoch (also
with another num_workers or world size); the DataModule carries the state across a resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from lit_vision.data import MiniPlacesDataModule
from lit_vision.data.epoch_order import shard_for_epoch
from lit_vision.data.resumable import ResumableDataLoader, resumable_loader
from lit_vision.errors import LitVisionError


class Indices(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def loaders(n: int, world_size: int, seed: int = 7, **kwargs) -> list[ResumableDataLoader]:
    return [resumable_loader(Indices(n), 4, seed, rank, world_size, **kwargs) for rank in range(world_size)]


def take(loader, epoch: int, batches: int | None = None) -> list[int]:
    loader.sampler.set_epoch(epoch)
    out = []
    for i, batch in enumerate(loader, start=1):
        out += batch.tolist()
        if i == batches:
            break
    return out


def test_order_is_the_shared_epoch_order():
    (loader,) = loaders(40, 1)
    assert take(loader, 3) == shard_for_epoch(40, seed=7, epoch=3).tolist()
    rank1 = loaders(40, 2)[1]
    assert take(rank1, 2) == shard_for_epoch(40, seed=7, epoch=2, rank=1, world_size=2).tolist()


@pytest.mark.parametrize("workers_before, workers_after", [(0, 2), (2, 0)])
def test_resumed_loader_yields_the_rest_of_the_epoch(workers_before, workers_after):
    first = loaders(48, 2, num_workers=workers_before)
    consumed = [take(loader, epoch=1, batches=2) for loader in first]  # 2 batches of 4 per rank
    state = first[0].state_dict()
    assert state == {"epoch": 1, "position": 16, "num_samples": 48, "seed": 7, "world_size": 2, "batch_size": 4,
                     "complete": False}
    # The resumed run's seed is drawn anew: the saved one wins for the interrupted epoch.
    resumed = loaders(48, 2, seed=99, num_workers=workers_after)
    for loader in resumed:
        loader.load_state_dict(state)
    rest = [take(loader, epoch=1) for loader in resumed]
    seen = [i for part in consumed + rest for i in part]
    assert sorted(seen) == list(range(48))
    # The next epoch starts from its beginning, in the saved seed's order.
    assert take(resumed[0], epoch=2) == shard_for_epoch(48, seed=7, epoch=2, rank=0, world_size=2).tolist()


def test_resume_with_another_world_size_continues_at_the_same_entry():
    first = loaders(48, 2)
    consumed = [take(loader, epoch=0, batches=3) for loader in first]
    (single,) = loaders(48, 1)
    single.load_state_dict(first[1].state_dict())  # every rank's state is the same
    rest = take(single, epoch=0)
    assert sorted(consumed[0] + consumed[1] + rest) == list(range(48))


def test_state_before_iterating_passes_a_loaded_state_on():
    (loader,) = loaders(20, 1)
    state = {"epoch": 4, "position": 8, "num_samples": 20, "seed": 1, "world_size": 1, "batch_size": 4, "complete": False}
    loader.load_state_dict(state)
    assert loader.state_dict() == state  # a checkpoint taken before the first batch keeps it


def test_iterator_made_before_set_epoch_draws_the_later_epoch():
    """Lightning creates the iterator before calling set_epoch; the order must be the epoch's."""
    (loader,) = loaders(24, 1, num_workers=1)
    iterator = iter(loader)
    loader.sampler.set_epoch(5)
    assert [i for batch in iterator for i in batch.tolist()] == shard_for_epoch(24, seed=7, epoch=5).tolist()


def test_state_from_another_training_set_is_refused():
    (loader,) = loaders(20, 1)
    with pytest.raises(LitVisionError, match="training set of 30 images, but this run's training set has 20"):
        loader.load_state_dict({"epoch": 0, "position": 8, "num_samples": 30, "seed": 1, "world_size": 1,
                                "batch_size": 4})  # fmt: skip


def test_datamodule_carries_the_loader_state_across_a_resume(standin_dir):
    """DataModule.state_dict holds the train loader's position; load_state_dict before the
    loader exists (Lightning restores the DataModule first) reaches the loader it builds."""

    def datamodule():
        dm = MiniPlacesDataModule(str(standin_dir), num_classes=4, batch_size=8, num_workers=0, resize_size=36,
                                  crop_size=32, verify=False, augment_on="worker")  # fmt: skip
        dm.setup("fit")
        return dm

    first = datamodule()
    loader = first.train_dataloader()
    batches = iter(loader)
    trained = [next(batches)[1] for _ in range(3)]
    state = first.state_dict()
    assert state["train_loader"]["position"] == 24
    second = datamodule()
    second.load_state_dict(state)
    rest = [labels for _, labels in second.train_dataloader()]
    assert len(trained) + len(rest) == len(loader) == 8
    uninterrupted = [labels for _, labels in datamodule().train_dataloader()]
    assert torch.equal(torch.cat(trained + rest), torch.cat(uninterrupted))

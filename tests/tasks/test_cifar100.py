"""cifar100: torchvision reads the generated on-disk fixture, augmentation, ResNet18 and its
destabilised variant, conv-reshape statistics, smoke training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_stats_oracle import assert_statistics_close, numpy_statistics
from torch import nn

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.tasks.datasets.cifar import load_cifar100, normalize_images, random_crop_flip, write_cifar100_fixture
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.models.resnet import CifarResNet18
from bayes_trainmap.tasks.registry import get_task
from bayes_trainmap.tasks.stats import default_parameter_selection, weight_statistics


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    checksums = write_cifar100_fixture(root, n_train=12, n_test=6, seed=3)
    return root, checksums


def test_torchvision_reads_the_generated_files(cifar_root):
    from torchvision.datasets import CIFAR100

    root, checksums = cifar_root
    train_x, train_y, test_x, test_y = load_cifar100(root, checksums=checksums)
    assert train_x.shape == (12, 3, 32, 32) and train_x.dtype == torch.uint8 and test_x.shape == (6, 3, 32, 32)
    assert len(set(train_x.flatten().tolist())) > 200  # random pixels, not a constant image
    # torchvision's own dataset object sees the same images (HWC) and the meta file's class names.
    checked = type("Checked", (CIFAR100,), {"train_list": [["train", checksums["train"]]],
                                            "test_list": [["test", checksums["test"]]],
                                            "meta": {**CIFAR100.meta, "md5": checksums["meta"]}})
    ds = checked(str(root), train=False)
    assert len(ds) == 6 and ds.classes[7] == "class_07" and ds.targets == test_y.tolist()
    assert np.array_equal(ds.data, test_x.permute(0, 2, 3, 1).numpy())  # torchvision keeps HWC
    image, label = ds[2]  # PIL image of 32x32 RGB
    assert image.size == (32, 32) and label == int(test_y[2])


def test_official_checksums_reject_the_fixture_without_downloading(cifar_root):
    root, _ = cifar_root
    with pytest.raises(TaskError, match="download"):
        load_cifar100(root)  # md5 of the official release does not match


def test_random_crop_flip_is_a_padded_crop_of_each_image():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, gen, padding=2)
    assert out.shape == images.shape and out.dtype == images.dtype
    for img, crop in zip(images.numpy(), out.numpy()):
        padded = np.pad(img, ((0, 0), (2, 2), (2, 2)))
        candidates = [
            c for dy in range(5) for dx in range(5)
            for c in (padded[:, dy : dy + 8, dx : dx + 8], padded[:, dy : dy + 8, dx : dx + 8][:, :, ::-1])
        ]
        assert any(np.array_equal(crop, c) for c in candidates)
    again = random_crop_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
    many = random_crop_flip(images.repeat(20, 1, 1, 1), gen, padding=2)
    assert not all(torch.equal(m, images[i % 6]) for i, m in enumerate(many))  # it does augment


def test_normalize_images_standardises_channels():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize_images(images, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    assert torch.allclose(out[:, 0], torch.tensor(2.0)) and torch.allclose(out[:, 2], torch.tensor(0.5))


def test_resnet_shapes_and_destabilised_variant():
    torch.manual_seed(0)
    full = CifarResNet18(100, width=4)
    plain = CifarResNet18(100, width=4, batch_norm=False, residual=False)
    x = torch.randn(2, 3, 32, 32)
    assert full(x).shape == (2, 100) and plain(x).shape == (2, 100)
    convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs(full)) == 17 + 3 and len(convs(plain)) == 17  # 3 projection shortcuts
    assert sum(isinstance(m, nn.BatchNorm2d) for m in full.modules()) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    # No residual: a block is exactly relu(conv2(relu(conv1(x)))).
    block = plain.layer2[0]
    h = torch.randn(1, 4, 16, 16)
    assert torch.allclose(block(h), torch.relu(block.conv2(torch.relu(block.conv1(h)))))
    # With residual connections the identity path is there.
    block = full.layer1[1].eval()
    expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(h))))) + h)
    assert torch.allclose(block(h), expected, atol=1e-6)


def test_statistics_reshape_conv_kernels_against_numpy():
    torch.manual_seed(2)
    model = CifarResNet18(10, width=2)
    with torch.no_grad():
        model.fc.bias.normal_()
    matrices = [
        m.weight.detach().numpy().reshape(m.weight.shape[0], -1)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    expected = numpy_statistics(matrices, [model.fc.bias.detach().numpy()])
    selection = get_task("cifar100", size="smoke").parameter_selection(model)
    assert not any("bn" in name or "shortcut.1" in name for name in selection.names)  # batch norm excluded
    assert_statistics_close(weight_statistics(model, selection), expected)
    assert_statistics_close(weight_statistics(model, default_parameter_selection(model)), expected)


def test_default_config_is_the_papers():
    task = get_task("cifar100")
    c = task.config
    assert (c["optimizer"], c["lr"], c["weight_decay"], c["batch_size"], c["width"]) == ("adamw", 1e-3, 1.0, 256, 64)
    assert c["augment"] and c["batch_norm"] and c["residual"] and not c["download"]
    assert task.threshold == 0.6 and not task.vmappable
    destab = get_task("cifar100", variant="destabilized")
    assert not destab.config["batch_norm"] and not destab.config["residual"] and destab.threshold == 0.4


@pytest.mark.parametrize("variant", ["default", "destabilized"])
def test_smoke_training_on_the_fixture(cifar_root, variant):
    root, checksums = cifar_root
    task = get_task("cifar100", variant=variant, size="smoke", data_root=str(root), checksums=checksums,
                    steps=8, eval_every=4, lr=3e-3, batch_size=12, train_eval_examples=12)
    frame = train_sequential(task, seed=0, device="cpu").frame
    assert frame["step"].tolist() == [0, 4, 8]
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert np.isfinite(frame.drop(columns=["run"]).to_numpy(dtype=float)).all()


def test_destabilised_network_trains_as_an_ensemble_and_batch_norm_falls_back(cifar_root):
    from bayes_trainmap.tasks.ensemble import train_ensemble

    root, checksums = cifar_root
    settings = dict(size="smoke", data_root=str(root), checksums=checksums, steps=4, eval_every=2)
    plain = get_task("cifar100", variant="destabilized", **settings)
    ensemble = train_ensemble(plain, [0, 1], device="cpu")
    assert [r.trainer for r in ensemble] == ["ensemble", "ensemble"]
    alone = train_sequential(plain, 1, device="cpu").frame
    cols = ["l2", "spectral", "train_loss"]
    np.testing.assert_allclose(ensemble[1].frame[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-4)
    with_bn = train_ensemble(get_task("cifar100", **settings), [0, 1], device="cpu")
    assert [r.trainer for r in with_bn] == ["sequential", "sequential"]

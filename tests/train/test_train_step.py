"""train_step: one optimiser step with clipping and the divergence check, the function the loop calls."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import resnet_apps.train.loop as loop_module
from resnet_apps.errors import TrainingDivergedError
from resnet_apps.recipe import TrainConfig
from resnet_apps.train import step as step_module
from resnet_apps.train.step import make_scaler, train_step

CPU = torch.device("cpu")


def _linear() -> torch.nn.Linear:
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -1.0]]))
    return net


def test_the_loop_steps_with_the_public_train_step() -> None:
    assert loop_module.train_step is step_module.train_step  # one step, for train and bench train


@pytest.mark.parametrize(
    "clip, expected_update",
    [
        # loss = sum((w.x)^2) over x = [3, 0], w = [1, -1]: dL/dw = 2 * (w.x) * x = [18, 0]
        (0.0, [-18.0, 0.0]),  # no clipping: SGD lr 1 moves w by -grad
        (2.0, [-2.0, 0.0]),  # clipped to norm 2 (clip_grad_norm_ scales by 2 / (18 + 1e-6))
    ],
)
def test_one_step_applies_the_gradient_clipped_to_grad_clip(
    clip: float, expected_update: list[float]
) -> None:
    net = _linear()
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    settings = dataclasses.replace(TrainConfig(), grad_clip=clip)
    before = net.weight.detach().clone()
    loss = train_step(
        net,
        lambda out, target: ((out - target) ** 2).sum(),
        optimizer,
        make_scaler("fp32", CPU),
        torch.tensor([[3.0, 0.0]]),
        torch.tensor([[0.0]]),
        settings,
        CPU,
    )
    assert loss == pytest.approx(9.0)  # the loss before the step
    update = (net.weight.detach() - before)[0].tolist()
    assert update == pytest.approx(expected_update, rel=1e-5)


def test_a_non_finite_loss_raises_before_any_parameter_moves() -> None:
    net = _linear()
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    before = net.weight.detach().clone()
    with pytest.raises(TrainingDivergedError, match="loss is nan"):
        train_step(
            net,
            lambda out, target: (out * float("nan")).sum(),
            optimizer,
            make_scaler("fp32", CPU),
            torch.ones(1, 2),
            torch.zeros(1, 1),
            TrainConfig(),
            CPU,
        )
    assert torch.equal(net.weight.detach(), before) and net.weight.grad is None


def test_channels_last_reaches_the_model() -> None:
    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x).mean((1, 2, 3))

    net = Probe()
    for channels_last in (False, True):
        train_step(
            net,
            torch.nn.functional.mse_loss,
            torch.optim.SGD(net.parameters(), lr=0.1),
            make_scaler("fp32", CPU),
            torch.ones(2, 3, 4, 4),
            torch.zeros(2),
            dataclasses.replace(TrainConfig(), channels_last=channels_last),
            CPU,
        )
    assert seen == [False, True]

"""Flow matching: schedules, objective, samplers exact on known fields, guidance wrapper."""

import pytest
import torch

from framecast.flow.editing import flow_edit
from framecast.flow.guidance import cfg
from framecast.flow.looping import cyclic
from framecast.flow.objective import flow_loss, interpolate, sample_times, velocity_target
from framecast.flow.samplers import SAMPLERS
from framecast.flow.schedules import resolution_shift, sampling_times, shift_time, start_at


def test_interpolation_ends_and_target():
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(interpolate(x0, noise, torch.zeros(3)), x0)
    assert torch.allclose(interpolate(x0, noise, torch.ones(3)), noise)
    t = torch.tensor([0.3, 0.5, 0.9])
    eps = 1e-3
    fd = (interpolate(x0, noise, t + eps) - interpolate(x0, noise, t)) / eps
    assert torch.allclose(fd, velocity_target(x0, noise), atol=1e-3)
    assert flow_loss(velocity_target(x0, noise), x0, noise) == 0


def test_uniform_share_of_times_reaches_the_noise_end():
    # the logit-normal all but never draws t near 1, where the sampler lays a clip out from pure noise
    plain = sample_times(20000, torch.Generator().manual_seed(0))
    mixed = sample_times(20000, torch.Generator().manual_seed(0), uniform=0.2)
    assert (plain > 0.98).float().mean() < 0.001
    assert 0.002 < (mixed > 0.98).float().mean() < 0.008  # 0.2 x 2% of uniform draws
    assert mixed.min() > 0 and mixed.max() < 1
    # no uniform share draws nothing more: old runs resume on the same random stream
    assert torch.equal(plain, sample_times(20000, torch.Generator().manual_seed(0), uniform=0.0))


def test_time_sampling_and_shift():
    g = torch.Generator().manual_seed(0)
    t = sample_times(10000, g)
    assert t.min() > 0 and t.max() < 1 and abs(t.mean() - 0.5) < 0.02
    shifted = sample_times(10000, torch.Generator().manual_seed(0), shift=3.0)
    assert shifted.mean() > t.mean() + 0.1  # more time near noise
    ts = torch.linspace(0, 1, 11)
    assert torch.allclose(shift_time(ts, 1.0), ts)
    assert shift_time(torch.tensor(0.0), 3.0) == 0 and shift_time(torch.tensor(1.0), 3.0) == 1
    assert resolution_shift(256) == pytest.approx(1.0) and resolution_shift(4096) == pytest.approx(3.0)
    assert resolution_shift(1024) > resolution_shift(512)
    assert resolution_shift(256, 3.0) == pytest.approx(3.0) and resolution_shift(4096, 3.0) == pytest.approx(9.0)
    s = sampling_times(8, shift=2.0)
    assert s[0] == 1 and s[-1] == 0 and torch.all(s[1:] < s[:-1])


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_samplers_exact_on_a_straight_flow(name, steps):
    """For one data point x0 the flow is straight: v(x, t) = (x - x0) / t; every step lands on it."""
    x0 = torch.randn(2, 3)

    def model_fn(x, t, cond):
        return (x - cond) / t[:, None]

    out = SAMPLERS[name](model_fn, torch.randn(2, 3), sampling_times(steps, shift=2.0), x0)
    assert torch.allclose(out, x0, atol=1e-5)


def test_heun_is_second_order_on_a_curved_field():
    """dx/dt = x: exact x(0) = x(1) e^-1. Heun's error falls ~4x per halving of the step."""
    def model_fn(x, t, cond):
        return x

    x1 = torch.ones(1, 1)
    exact = torch.exp(torch.tensor(-1.0))
    errs = {n: (SAMPLERS["heun"](model_fn, x1, torch.linspace(1, 1e-9, n + 1), None) - exact).abs().item() for n in (8, 16)}
    euler = (SAMPLERS["euler"](model_fn, x1, torch.linspace(1, 1e-9, 17), None) - exact).abs().item()
    assert errs[16] < errs[8] / 3 and errs[16] < euler / 10


def test_callback_sees_every_step():
    seen = []
    SAMPLERS["heun"](lambda x, t, c: x, torch.ones(1, 1), sampling_times(5), None, callback=lambda i, n, x: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(5)]


def test_guidance_wrapper():
    calls = []

    def model_fn(x, t, cond):
        calls.append(x.shape[0])
        return cond[:, None].expand(-1, x.shape[1]).clone()

    x, t = torch.zeros(2, 3), torch.ones(2)
    pos, neg = torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])
    v = cfg(model_fn, 4.0)(x, t, (pos, neg))
    assert torch.allclose(v, torch.full((2, 3), 1.0 + 4.0 * (2.0 - 1.0)))
    assert calls == [4]  # one batched pass for both
    assert torch.allclose(cfg(model_fn, 1.0)(x, t, (pos, neg)), torch.full((2, 3), 2.0))


def test_cyclic_rolls_the_cycle_and_each_velocity_back_to_its_frame():
    seen = []

    def model_fn(x, t, cond):  # each frame's velocity: its own value plus where the model saw it
        seen.append(x[0, 0, :, 0, 0].tolist())
        return x + torch.arange(x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1) * 100

    x = torch.arange(7.0).view(1, 1, 7, 1, 1).expand(2, 3, 7, 2, 2).contiguous()  # frame j holds j
    fn = cyclic(model_fn, first=1)
    period = 6
    for _ in range(period):
        v = fn(x, torch.ones(2), None)
        order = torch.tensor(seen[-1]).long()
        assert torch.equal(v[:, :, order] - x[:, :, order], torch.arange(7.0).view(1, 1, 7, 1, 1).expand_as(v) * 100)
    assert all(s[0] == 0 for s in seen)  # the frame before the cycle stays first
    assert len({tuple(s) for s in seen}) == period  # every shift once in `period` calls
    pairs = [(a, b) for s in seen for a, b in zip(s[1:], s[2:])]
    for j in range(1, 7):  # every neighbour in the cycle, the last before the first, seen side by side
        after = j % 6 + 1
        assert pairs.count((j, after)) == period - 1
    got = []  # times per frame (given frames at 0) move with their frames
    fn = cyclic(lambda x, t, c: (got.append((x[0, 0, :, 0, 0].clone(), t[0].clone())), x)[1], first=1)
    for _ in range(3):
        fn(x, torch.arange(7.0).view(1, 7).expand(2, 7), None)
        assert torch.equal(*got[-1])


def test_a_cycle_longer_than_the_window_runs_in_chunks_led_by_the_frames_before_it():
    seen = []

    def model_fn(x, t, cond):  # a per-frame field: chunking must not change any frame's velocity
        seen.append(x[0, 0, :, 0, 0].tolist())
        return 2 * x + 1

    x = torch.arange(11.0).view(1, 1, 11, 1, 1).expand(1, 2, 11, 3, 3).contiguous()  # a lone frame + 10
    fn = cyclic(model_fn, first=1, window=4)
    for _ in range(10):
        assert torch.equal(fn(x, torch.ones(1), None), 2 * x + 1)
    assert all(len(s) <= 4 and s[0] == 0 for s in seen)  # each call: the lone frame, then a chunk
    assert len(seen) == 10 * 4  # 10 cycle frames, 3 a call: 4 chunks a step
    pairs = {(a, b) for s in seen for a, b in zip(s[1:], s[2:])}
    assert {(j, j % 10 + 1) for j in range(1, 11)} <= pairs  # every neighbour, 10 before 1, seen side by side


def _point_mass(x0):
    """The straight flow of a single data point x0: v(x, t) = (x - x0) / t."""
    return lambda x, t, cond: (x - x0) / t.view(-1, *[1] * (x.dim() - 1))


@pytest.mark.parametrize("t0", [0.3, 0.9])
def test_flow_edit_lands_on_the_edit_and_keeps_what_the_prompts_agree_on(t0):
    """Source flow to the source, edit flow to the source with one channel changed: FlowEdit ends
    exactly on the edit, whatever noise it draws, so the untouched channels come back as they were."""
    source = torch.randn(1, 3, 2, 4, 4)
    edit = source.clone()
    edit[:, 0] += 1.5
    gen = torch.Generator().manual_seed(0)
    out = flow_edit(_point_mass(edit), _point_mass(source), source, start_at(sampling_times(8, 2.0), t0), None, None,
                    lambda: torch.randn(source.shape, generator=gen))
    assert torch.allclose(out, edit, atol=1e-5)
    assert torch.allclose(out[:, 1:], source[:, 1:], atol=1e-5)


def test_flow_edit_with_one_flow_for_both_changes_nothing():
    source = torch.randn(1, 3, 2, 4, 4)
    seen = []

    def model_fn(x, t, cond):
        return torch.sin(3 * x) + t.view(-1, 1, 1, 1, 1)  # any field: the two velocities cancel

    out = flow_edit(model_fn, model_fn, source, start_at(sampling_times(6), 0.8), None, None,
                    lambda: torch.randn(source.shape), callback=lambda i, n, z: seen.append((i, n)))
    assert torch.equal(out, source)
    assert seen == [(i, 5) for i in range(5)]  # 0.8 and the 4 shifted times below it

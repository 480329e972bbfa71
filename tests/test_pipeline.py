"""Model folders, text-to-video generation and `framecast generate`, with the tiny preset on CPU."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from framecast.config import PRESETS, ModelConfig
from framecast.models.text import TextEncoder
from framecast.pipeline import Framecast, ModelMeta, SampleOptions, generate
from framecast.video.io import read_mp4
from tiny import tiny_model

FRAMECAST = Path(sys.executable).with_name("framecast")
TINY = PRESETS["tiny"]
META = ModelMeta(fps=8.0, width=32, height=32, steps=3, guidance=4.0)
PROMPT = "a red ball moves to the right"


def make_model(text: TextEncoder, config: ModelConfig = TINY, seed: int = 0) -> Framecast:
    return tiny_model(META, text, config, seed)


@pytest.fixture(scope="module")
def text():
    return TextEncoder()


@pytest.fixture(scope="module")
def model(text):
    return make_model(text)


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return folder


def gen(model, prompt=PROMPT, progress=None, **opts):
    frames, fps, notes = generate(model, prompt, SampleOptions(**{"seconds": 1.0, **opts}), progress)
    assert frames.dtype == torch.uint8 and frames.shape[-1] == 3
    return frames, fps, notes


def command(*args) -> list[str]:
    cmd = [str(FRAMECAST)] if FRAMECAST.exists() else [sys.executable, "-m", "framecast"]
    return cmd + [str(a) for a in args]


def run(*args):
    return subprocess.run(command(*args), check=False, capture_output=True, text=True, timeout=300)


def run_all(*arg_lists):
    """Run several `framecast` commands at once (each is mostly start-up time)."""
    procs = [subprocess.Popen(command(*a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in arg_lists]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


# --- model folder ---------------------------------------------------------------------------

def test_save_load_round_trip(model, model_dir, text):
    doc = json.loads((model_dir / "config.json").read_text())
    assert doc["format"] == "framecast-model" and doc["meta"]["text_encoder"] == "all-MiniLM-L6-v2"
    loaded = Framecast.load(model_dir, text=text)
    assert loaded.config == model.config and loaded.meta == model.meta
    assert not loaded.training and loaded.text is text
    for name in ("vae", "dit"):
        a, b = getattr(model, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys()
        # stored as fp16 (half the folder), used as fp32
        assert all(torch.equal(a[k].half().float(), b[k]) for k in a), name
        assert all(b[k].dtype == torch.float32 for k in b), name
    again = Framecast.load(model_dir, text=text)
    assert torch.equal(gen(again, seed=3)[0], gen(loaded, seed=3)[0])


def _broken_folder(kind: str, model_dir: Path, text: TextEncoder, tmp: Path) -> Path:
    folder = tmp / kind
    shutil.copytree(model_dir, folder)
    if kind == "no_config":
        (folder / "config.json").unlink()
    elif kind == "no_weights":
        (folder / "model.safetensors").unlink()
    elif kind == "not_framecast":  # e.g. a Hugging Face model's config
        (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 384}))
    elif kind == "other_preset":  # weights saved from a wider DiT, config.json of the tiny one
        other = ModelConfig(TINY.vae, dataclasses.replace(TINY.dit, dim=32))
        Framecast(other, META, text).save(tmp / "other")
        shutil.copy(tmp / "other" / "model.safetensors", folder / "model.safetensors")
    elif kind == "bad_best_of":
        doc = json.loads((folder / "config.json").read_text())
        doc["meta"]["best_of"] = 0
        (folder / "config.json").write_text(json.dumps(doc))
    elif kind == "bad_time_shift":
        doc = json.loads((folder / "config.json").read_text())
        doc["meta"]["time_shift"] = 0
        (folder / "config.json").write_text(json.dumps(doc))
    return folder


BROKEN = [
    ("no_config", FileNotFoundError, "has no config.json"),
    ("no_weights", FileNotFoundError, "has no model.safetensors"),
    ("not_framecast", ValueError, "is not a framecast model config"),
    ("other_preset", ValueError, "the dit weights do not match config.json"),
    ("bad_time_shift", ValueError, "meta.time_shift must be a number above 0"),
    ("bad_best_of", ValueError, "meta.best_of must be a whole number from 1 to 16"),
]


@pytest.mark.parametrize("kind, error, message", BROKEN)
def test_broken_model_folder_is_a_clear_error(kind, error, message, model_dir, text, tmp_path):
    folder = _broken_folder(kind, model_dir, text, tmp_path)
    with pytest.raises(error, match=message):
        Framecast.load(folder, text=text)


def test_broken_model_folder_through_the_cli(model_dir, text, tmp_path):
    folders = [_broken_folder(kind, model_dir, text, tmp_path) for kind, _, _ in BROKEN]
    results = run_all(*(["generate", PROMPT, "--model", f, "-o", tmp_path / "x.mp4"] for f in folders))
    for (kind, _, message), res in zip(BROKEN, results):
        assert res.returncode == 2, (kind, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, (kind, res.stderr)
    assert not (tmp_path / "x.mp4").exists()


# --- generate -------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, fps, frames", [(1, 8, 8), (2, 12, 24), (0.5, 8, 4), (0.5, 12, 6)])
def test_frame_count_is_seconds_times_fps(model, seconds, fps, frames):
    video, got_fps, notes = gen(model, seconds=seconds, fps=fps, steps=1, expand=False)
    assert video.shape == (frames, 32, 32, 3) and got_fps == fps and notes == []


def test_defaults_come_from_the_model_folder(model):
    video, fps, _ = gen(model, seconds=2)
    assert video.shape == (16, META.height, META.width, 3) and fps == META.fps


def test_requested_size_is_honoured_or_rounded_with_a_notice(model):
    video, _, notes = gen(model, width=64, height=32, steps=1, expand=False)
    assert video.shape[1:3] == (32, 64) and notes == []
    video, _, notes = gen(model, width=40, height=24, steps=1, expand=False)  # the tiny model needs multiples of 16
    assert video.shape[1:3] == (32, 48)
    assert len(notes) == 1 and "40x24" in notes[0] and "48x32" in notes[0]


def test_seed_decides_the_video(model):
    a, b, c = (gen(model, seed=s)[0] for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert (a.float() - c.float()).abs().mean() > 1


def test_guidance_and_negative_prompt(model):
    def video(prompt=PROMPT, **opts):
        return gen(model, prompt, seed=5, steps=2, **opts)[0].float()

    plain, guided = video(guidance=1.0), video(guidance=4.0)
    negative = video(guidance=4.0, negative_prompt="a blue square falls")
    assert (plain - guided).abs().mean() > 1
    assert (guided - negative).abs().mean() > 1
    # without guidance the negative prompt is not used at all, and the prompt decides the video
    assert torch.equal(plain, video(guidance=1.0, negative_prompt="a blue square falls"))
    assert (plain - video("a green triangle", guidance=1.0)).abs().mean() > 1


@pytest.mark.parametrize("sampler, dit_calls", [("euler", 4), ("heun", 7)])  # Heun's last step is Euler's
def test_samplers_run_every_step(model, sampler, dit_calls):
    seen, calls = [], []
    hook = model.dit.register_forward_hook(lambda *_: calls.append(1))
    try:
        video, _, _ = gen(model, sampler=sampler, steps=4, seed=7, progress=lambda i, n: seen.append((i, n)))
    finally:
        hook.remove()
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(calls) == dit_calls  # guided passes run as one batch
    assert video.shape == (8, 32, 32, 3)


def test_sampler_times_follow_the_models_time_shift(model):
    """The DiT is sampled at the flow times it trained on: a model folder's time_shift moves them toward noise."""
    def times(shift):
        seen = []
        hook = model.dit.register_forward_hook(lambda mod, args, out: seen.append(float(args[1].max())))
        meta = model.meta
        model.meta = dataclasses.replace(meta, time_shift=shift)
        try:
            gen(model, steps=4, seed=7, expand=False)
        finally:
            model.meta = meta
            hook.remove()
        return seen

    plain, shifted = times(1.0), times(3.0)
    assert plain[0] == shifted[0] == 1.0  # both start from pure noise
    assert all(s > p for s, p in zip(shifted[1:], plain[1:]))


def test_euler_and_heun_differ(model):
    assert not torch.equal(gen(model, sampler="euler", steps=2)[0], gen(model, sampler="heun", steps=2)[0])


@pytest.mark.parametrize("prompt, opts, message", [
    ("", {}, "prompt is empty"),
    ("   ", {}, "prompt is empty"),
    (PROMPT, {"seconds": 0}, "seconds must be a positive"),
    (PROMPT, {"seconds": -1.0}, "seconds must be a positive"),
    (PROMPT, {"seconds": float("nan")}, "seconds must be a positive"),
    (PROMPT, {"seconds": 0.01}, "holds no frame"),
    (PROMPT, {"steps": 0}, "steps must be"),
    (PROMPT, {"steps": -2}, "steps must be"),
    (PROMPT, {"fps": 0}, "fps must be"),
    (PROMPT, {"width": 0, "height": 32}, "size must be at least"),
    (PROMPT, {"sampler": "ddim"}, "unknown sampler"),
    (PROMPT, {"best_of": 0}, "best_of must be"),
    (PROMPT, {"best_of": 17}, "best_of must be"),
    (PROMPT, {"best_of": True}, "best_of must be"),
])
def test_bad_requests_are_clear_errors(model, prompt, opts, message):
    with pytest.raises(ValueError, match=message):
        generate(model, prompt, SampleOptions(**{"seconds": 1.0, **opts}))


# --- best of n ------------------------------------------------------------------------------

def test_best_of_keeps_the_candidate_that_passes_most_world_checks(model):
    from framecast.pipeline import candidate_seed, prepare, world_score, world_target

    steps, n, prompt = [], 3, "a red ball falls and bounces"
    frames, fps, notes = gen(model, prompt, lambda i, total: steps.append((i, total)), steps=2, seed=7, best_of=n)
    assert steps == [(i, 2 * n) for i in range(1, 2 * n + 1)]  # one bar over every candidate's steps
    scores = []
    for k in range(n):  # each candidate made alone, with its own seed, scored against its own caption
        seed = candidate_seed(7, k)
        alone, _, alone_notes = gen(model, prompt, steps=2, seed=seed, best_of=1)
        job = prepare(model, prompt, SampleOptions(seconds=1.0, steps=2, seed=seed))
        scores.append((world_score(alone, fps, world_target(job, prompt)), seed, alone, alone_notes))
    best = max(scores, key=lambda c: c[0])  # the first of the best on a tie
    assert torch.equal(frames, best[2])
    assert f"best of {n}: kept candidate {scores.index(best) + 1} (seed {best[1]})" in notes[-1]
    assert notes[:-1] == best[3]  # its own expansion is the one reported
    assert scores.index(best) > 0  # here a later candidate wins: the choice is exercised
    assert len({s for _, s, _, _ in scores}) == n and candidate_seed(7, 0) == 7


def test_best_of_ranks_a_long_clip_on_its_first_window_and_goes_on_with_the_kept_one(model):
    from framecast.pipeline import candidate_seed, prepare, world_score, world_target

    prompt, n, calls = "a red ball falls and bounces", 3, []
    frames, fps, notes = gen(model, prompt, lambda i, total: calls.append((i, total)), seconds=8.0, steps=2,
                             seed=7, best_of=n)
    job = prepare(model, prompt, SampleOptions(seconds=8.0, steps=2, seed=7))
    assert len(job.plan) == 2 and job.plan[0].keep == 48  # two windows: the first (48 frames) is ranked
    total = (n - 1) * 2 + 2 * len(job.plan)  # every candidate's first window, then the kept one's second
    assert calls == [(i, total) for i in range(1, total + 1)]
    scores = []
    for k in range(n):
        seed = candidate_seed(7, k)
        alone = gen(model, prompt, seconds=8.0, steps=2, seed=seed, best_of=1)[0]
        cand = prepare(model, prompt, SampleOptions(seconds=8.0, steps=2, seed=seed))
        scores.append((world_score(alone[:48], fps, world_target(cand, prompt)), seed, alone))
    best = max(scores, key=lambda c: c[0])
    assert torch.equal(frames, best[2]) and len(frames) == 64  # the kept seed's clip, as it makes it alone
    assert f"(seed {best[1]})" in notes[-1] and "in its first 6.0 s" in notes[-1]


def test_a_loop_candidate_scores_higher_when_it_closes():
    from framecast.pipeline import world_score
    from framecast.world.clip import make_clip
    from framecast.world.parse import parse_prompt

    clip = make_clip(5, 2.0, 12, 64, 64)
    there = torch.from_numpy(clip.frames)
    back = torch.cat([there, there.flip(0)[1:-1]])  # there and back: the last step leads into the first frame
    target = parse_prompt(clip.prompt)
    open_, closed = world_score(there, 12, target, loop=True), world_score(back, 12, target, loop=True)
    assert open_[1] is False and closed[1] is True
    assert world_score(there, 12, target)[1] is True  # a clip that is no loop has no seam to close


def test_best_of_one_is_the_plain_generation_and_deterministic(model):
    plain, _, notes = gen(model, steps=2, seed=4, best_of=1)
    assert not any(n.startswith("best of") for n in notes)
    assert torch.equal(gen(model, steps=2, seed=4, best_of=2)[0], gen(model, steps=2, seed=4, best_of=2)[0])
    meta = dataclasses.replace(model.meta)
    try:  # the model folder's default applies when the request leaves it open
        model.meta = dataclasses.replace(meta, best_of=2)
        assert torch.equal(gen(model, steps=2, seed=4)[0], gen(model, steps=2, seed=4, best_of=2)[0])
    finally:
        model.meta = meta


def test_best_of_makes_one_when_the_world_checks_see_nothing(model):
    steps = []
    _, _, notes = gen(model, "a video", lambda i, total: steps.append(total), steps=2, best_of=4, expand=False)
    assert set(steps) == {2} and not any(n.startswith("best of") for n in notes)


# --- the text encoder -----------------------------------------------------------------------

def test_text_encoder_tokens_and_mask(text):
    tokens, mask = text(["a red ball", "a small blue square slides to the left", ""])
    assert tokens.dtype == torch.float32 and tokens.shape[0] == 3 and tokens.shape[2] == 384
    assert mask.dtype == torch.bool and mask.shape == tokens.shape[:2]
    lengths = mask.sum(1).tolist()
    assert lengths[1] == tokens.shape[1] and lengths[0] < lengths[1] and lengths[2] == 2  # [CLS] [SEP]
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(lengths))
    alone, _ = text(["a red ball"])  # padding never changes a prompt's tokens
    assert torch.allclose(alone[0], tokens[0, :lengths[0]], atol=1e-4)


def test_long_prompt_is_truncated_with_a_warning(text, model):
    long = "a red ball bounces off the wall and " * 40
    with pytest.warns(UserWarning, match="longer than 128 tokens"):
        tokens, mask = text([long, "a red ball"])
    assert tokens.shape == (2, 128, 384) and mask[0].all()
    with pytest.warns(UserWarning, match="longer than 128 tokens"):  # as written: expansion would rewrite it
        video, _, _ = gen(model, long, steps=1, expand=False)
    assert video.shape == (8, 32, 32, 3)


# --- the command line -----------------------------------------------------------------------

def test_cli_generate_writes_the_same_mp4_for_the_same_seed(model_dir, tmp_path):
    outs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    results = run_all(*(["generate", PROMPT, "--model", model_dir, "--seconds", 2, "--steps", 4, "--seed", 11,
                         "-o", o] for o in outs))  # two processes at once: as independent as two runs
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "wrote" in res.stdout and "Traceback" not in res.stderr
    (a, fps_a), (b, fps_b) = read_mp4(outs[0]), read_mp4(outs[1])
    assert a.shape == b.shape == (2 * int(META.fps), META.height, META.width, 3)
    assert fps_a == fps_b == pytest.approx(META.fps)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("args, message", [
    (["", "--model", "{model}"], "the prompt is empty"),
    ([PROMPT, "--model", "{model}", "--steps", "0"], "--steps must be at least 1"),
    ([PROMPT, "--model", "{model}", "--seconds", "0"], "must be positive"),
    ([PROMPT, "--model", "{model}", "--size", "big"], "size must look like"),
    ([PROMPT, "--model", "{model}", "--guidance", "nan"], "--guidance must be a finite number"),
    ([PROMPT, "--model", "{model}", "--best-of", "0"], "--best-of: must be from 1 to 16"),
    ([PROMPT, "--model", "{model}", "--best-of", "two"], "--best-of: expected a whole number"),
    ([PROMPT, "--model", "{tmp}/nowhere"], "no model folder at"),
    ([PROMPT, "--model", "{model}", "-o", "{tmp}/no/such/dir/x.mp4"], "does not exist"),
])
def test_cli_bad_input_exits_2_with_a_message(model_dir, tmp_path, args, message):
    args = [a.format(model=model_dir, tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.mp4")]
    res = run("generate", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "x.mp4").exists()


# --- prompt expansion -----------------------------------------------------------------------

def test_prompts_are_expanded_by_default_and_seeded(model):
    _, _, notes = gen(model, "a red ball falls", steps=1, seed=3)
    expanded = [n for n in notes if n.startswith("prompt expanded to: ")]
    assert len(expanded) == 1 and "red" in expanded[0] and "floor" in expanded[0]  # gravity: the floor is named
    assert gen(model, "a red ball falls", steps=1, seed=3)[2] == notes  # same seed, same caption
    _, _, plain = gen(model, "a red ball falls", steps=1, seed=3, expand=False)
    assert not any(n.startswith("prompt expanded") for n in plain)


def test_expansion_refuses_what_the_world_lacks_and_no_expand_passes_it_through(model):
    with pytest.raises(ValueError, match="names no object.*turn it off"):
        gen(model, "a cat plays the piano", steps=1)
    video, _, _ = gen(model, "a cat plays the piano", steps=1, expand=False)
    assert video.shape == (8, 32, 32, 3)


def test_cli_no_expand(model_dir, tmp_path):
    out = tmp_path / "cat.mp4"
    res = run("generate", "a cat plays the piano", "--model", model_dir, "--steps", 1, "--seconds", 1, "-o", out)
    assert res.returncode == 2 and "turn it off" in res.stderr and not out.exists()
    res = run("generate", "a cat plays the piano", "--model", model_dir, "--steps", 1, "--seconds", 1, "-o", out,
              "--no-expand")
    assert res.returncode == 0, res.stderr
    assert read_mp4(out)[0].shape[0] == int(META.fps)


def test_cli_generates_a_prompts_file_into_a_folder_framecast_eval_reads(model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# held-out prompts\na red ball moves to the right\n\na cat plays the piano\na blue box spins clockwise\n")
    out = tmp_path / "clips"
    res = run("generate", "--prompts-file", prompts, "-o", out, "--model", model_dir, "--steps", 1, "--seconds", 1,
              "--seed", 7, "--best-of", 2)
    assert res.returncode == 0, res.stderr
    assert "skipped 001.mp4" in res.stderr  # the world has no cat: that line is skipped, the rest is made
    assert sorted(p.name for p in out.iterdir()) == ["000.json", "000.mp4", "002.json", "002.mp4"]
    meta = json.loads((out / "002.json").read_text())
    assert meta["prompt"] == "a blue box spins clockwise" and meta["seed"] == 9 and "blue" in meta["caption"]
    kept = [n for n in meta["notes"] if n.startswith("best of 2: kept candidate")]  # which seed made this clip
    assert len(kept) == 1 and "(seed " in kept[0] and any(meta["caption"] in n for n in meta["notes"])
    res = run("eval", out, "--json")
    assert res.returncode == 0, res.stderr
    assert [c["prompt"] for c in json.loads(res.stdout)["clips"]] == ["a red ball moves to the right",
                                                                     "a blue box spins clockwise"]
    res = run("generate", "a red ball", "--prompts-file", prompts, "-o", out, "--model", model_dir)
    assert res.returncode == 2 and "not both" in res.stderr

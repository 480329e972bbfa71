"""`framecast serve`: OpenAI's Videos API driven by the official openai client against a real
server on loopback (text-, image- and video-to-video), the durable job queue (kill -9 mid-job,
restart), API keys, and bad input."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import types
import urllib.parse

import numpy as np
import openai
import pytest
from PIL import Image
from serving import META, Server, command, http, make_model_dir, pid_alive, wait_for

from framecast.server.params import EXTRA_FIELDS, ApiError, create_spec, extension_spec, resolve_seconds, resolve_size
from framecast.server.settings import ModelInfo, ServerSettings
from framecast.server.store import Store
from framecast.video.inputs import resize
from framecast.video.io import read_mp4

# the openai package marks its Videos API deprecated (Sora's shutdown), which is no concern here
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
KEY_A, KEY_B = "key-a", "key-b"
LONG_JOB = {"size": "64x64", "seconds": "4", "extra_body": {"steps": 300}}  # a second or more of work


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    srv = Server(model_dir, tmp_path_factory.mktemp("srv") / "data", "--api-key", KEY_A, "--api-key", KEY_B)
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client(KEY_A)


def data_dir(server: Server):
    return server.proc.args[server.proc.args.index("--data") + 1]


# --- the job store -------------------------------------------------------------------------------

def _add(store: Store, id: str) -> None:
    store.add(id=id, owner="", prompt="p", model="m", seconds="1", size="32x32", options={"seed": 1})


def test_store_claims_in_order_and_only_the_claimant_writes(tmp_path):
    store = Store(tmp_path / "jobs.db")
    for i in range(3):
        _add(store, f"v{i}")
    a, b = store.claim("wa"), store.claim("wb")
    assert (a.id, a.status, a.attempts, b.id) == ("v0", "in_progress", 1, "v1")
    assert store.set_progress("v0", "wa", 40) and not store.set_progress("v0", "wb", 50)
    assert not store.complete("v0", "wb") and store.complete("v0", "wa")
    assert store.get("v0").status == "completed" and store.get("v0").progress == 100
    assert store.delete("v1") is not None
    assert not store.set_progress("v1", "wb", 10) and not store.complete("v1", "wb")  # deleted mid-job
    assert store.fail("v2", "wc", "x", "y") is False  # not claimed
    store.close()
    again = Store(tmp_path / "jobs.db")  # everything is on disk
    assert [j.id for j in again.list("", limit=10)[0]] == ["v2", "v0"]


def test_store_requeues_interrupted_jobs_and_gives_up_after_max_attempts(tmp_path):
    store = Store(tmp_path / "jobs.db", max_attempts=2)
    _add(store, "v0")
    store.claim("w1")
    assert store.requeue(["other"]) == 0 and store.get("v0").status == "in_progress"
    assert store.requeue(["w1"], charge=False) == 1  # an orderly stop does not count
    job = store.get("v0")
    assert (job.status, job.attempts, job.worker) == ("queued", 0, None)
    store.claim("w2")
    assert store.requeue() == 1 and store.get("v0").status == "queued"  # a crash counts: 1 of 2
    store.claim("w3")
    assert store.requeue() == 1
    job = store.get("v0")
    assert job.status == "failed" and job.error_code == "interrupted" and "2 times" in job.error_message


def test_store_opens_a_data_folder_of_schema_1(tmp_path):
    store = Store(tmp_path / "jobs.db")
    store.close()
    with sqlite3.connect(tmp_path / "jobs.db") as db:  # as framecast's first server left it
        db.execute("ALTER TABLE jobs DROP COLUMN given")
        db.execute("ALTER TABLE jobs DROP COLUMN provenance")
        db.execute("PRAGMA user_version=1")
    db.close()
    store = Store(tmp_path / "jobs.db")
    _add(store, "v0")
    job = store.get("v0")
    assert (job.given, job.provenance) == (None, None)


# --- request parameters --------------------------------------------------------------------------

INFO = ModelInfo(name="framecast-t", fps=8.0, width=32, height=32, multiple=(16, 16), max_pixels=16 * 32 * 32)


@pytest.mark.parametrize("size, made", [(None, (32, 32)), ("64x48", (64, 48)), ("100x100", (96, 96)),
                                        ("720x1280", (32, 48)), ("1280x720", (48, 32))])
def test_sizes_map_to_what_the_model_makes(size, made):
    assert resolve_size(size, INFO) == made


@pytest.mark.parametrize("size, message", [("big", "WIDTHxHEIGHT"), ("0x32", "at least 1x1"),
                                           ("4096x4096", "too large"), ("8x8", "too far")])
def test_bad_sizes_are_refused(size, message):
    with pytest.raises(ApiError, match=message):
        resolve_size(size, INFO)


def test_seconds():
    assert resolve_seconds(None, INFO, 20) == (4.0, "4")
    assert resolve_seconds("2.50", INFO, 20) == (2.5, "2.5")
    for bad in ("0", "-1", "21", "nan", "x", "0.01"):
        with pytest.raises(ApiError):
            resolve_seconds(bad, INFO, 20)


def test_extensions_cannot_grow_a_video_without_limit(tmp_path):
    settings = ServerSettings(model_dir=tmp_path, max_seconds=20, max_video_seconds=120)
    source = types.SimpleNamespace(seconds="110", size="32x32", options={"seed": 1})
    spec = extension_spec({"prompt": "the red ball keeps falling", "seconds": "10"}, source, tmp_path / "a.mp4", INFO, settings)
    assert spec.seconds == "120"
    with pytest.raises(ApiError, match="would be 122 s; a video may be at most 120 s") as err:
        extension_spec({"prompt": "the red ball keeps falling", "seconds": "12"}, source, tmp_path / "a.mp4", INFO, settings)
    assert (err.value.status, err.value.param) == (400, "seconds")


def test_best_of_is_asked_for_checked_and_kept_by_an_extension(tmp_path):
    settings = ServerSettings(model_dir=tmp_path)
    fields = {"prompt": "a red ball falls", "seconds": "1"}
    assert create_spec(fields, INFO, settings).options["best_of"] is None  # the model's default
    spec = create_spec({**fields, "best_of": "3"}, INFO, settings)  # a form field is text
    assert spec.options["best_of"] == 3
    source = types.SimpleNamespace(seconds="1", size="32x32", options=spec.options)
    more = extension_spec({"prompt": "the red ball keeps falling"}, source, tmp_path / "a.mp4", INFO, settings)
    assert more.options["best_of"] == 3
    for bad in ("0", "17", "x"):
        with pytest.raises(ApiError) as err:
            create_spec({**fields, "best_of": bad}, INFO, settings)
        assert (err.value.status, err.value.param) == (400, "best_of")


# --- the API through the openai client -----------------------------------------------------------

def test_create_poll_download(client, tmp_path):
    video = client.videos.create_and_poll(prompt="a red ball falls and bounces", seconds="2", size="48x32",
                                          poll_interval_ms=100)
    assert video.status == "completed" and video.progress == 100 and video.error is None, video
    assert (video.object, video.seconds, video.size, video.model) == ("video", "2", "48x32", "framecast-tiny")
    assert video.completed_at >= video.created_at and video.id.startswith("video_")
    prov = video.provenance  # framecast's own field: the openai client keeps it
    assert (prov["framecast"], prov["c2pa"], prov["watermark"]) == (True, "valid", True), prov
    assert client.videos.retrieve(video.id) == video
    out = tmp_path / "a.mp4"
    client.videos.download_content(video.id).write_to_file(out)
    frames, fps = read_mp4(out)
    assert frames.shape == (2 * int(META.fps), 32, 48, 3) and fps == pytest.approx(META.fps)
    thumb = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="thumbnail").read()))
    sheet = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="spritesheet").read()))
    assert (thumb.format, thumb.size) == ("WEBP", (48, 32))
    assert sheet.format == "JPEG" and sheet.size == (5 * 48, 2 * 32)  # 10 frames, 5 a row


def test_sora_style_request_works_unchanged(client):
    video = client.videos.create_and_poll(prompt="a blue box slides left", model="sora-2", size="1280x720",
                                          seconds="4", poll_interval_ms=100)
    assert video.status == "completed" and video.size == "48x32" and video.seconds == "4"


def test_framecast_options_and_same_seed_same_video(client):
    videos = [client.videos.create(prompt="a green triangle spins", seconds="1", extra_body={"seed": 7, "steps": 3, "best_of": 2})
              for _ in range(2)]
    done = [client.videos.poll(v.id, poll_interval_ms=100) for v in videos]
    assert all(v.status == "completed" for v in done)
    a, b = (read_mp4_bytes(client.videos.download_content(v.id).read()) for v in done)
    assert np.array_equal(a, b)


def test_list_pages_and_order(client):
    ids = [client.videos.create(prompt=f"a white ball moves {('left', 'right', 'up')[i]}", seconds="1").id for i in range(3)]
    page = client.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[::-1][:2] and page.has_more
    nxt = client.videos.list(limit=2, after=page.data[-1].id)
    assert nxt.data[0].id == ids[0]
    everything = [v.id for v in client.videos.list(limit=2)]  # the client follows the pages
    assert everything[:3] == ids[::-1] and len(everything) == len(set(everything))
    oldest_first = [v.id for v in client.videos.list(order="asc", limit=100)]
    assert oldest_first == everything[::-1]
    for i in ids:
        client.videos.poll(i, poll_interval_ms=100)


def test_remix_reuses_the_source_settings(client):
    source = client.videos.create_and_poll(prompt="a red ball moves right", seconds="1", size="32x48",
                                           poll_interval_ms=100)
    remix = client.videos.remix(source.id, prompt="a blue ball moves right")
    assert remix.remixed_from_video_id == source.id and remix.status in ("queued", "in_progress")
    assert (remix.size, remix.seconds, remix.prompt) == ("32x48", "1", "a blue ball moves right")
    done = client.videos.poll(remix.id, poll_interval_ms=100)
    assert done.status == "completed"
    assert read_mp4_bytes(client.videos.download_content(done.id).read()).shape == (8, 48, 32, 3)
    queued = client.videos.create(prompt="a red box sits still", **LONG_JOB)
    with pytest.raises(openai.BadRequestError, match="only a completed video can be remixed"):
        client.videos.remix(queued.id, prompt="x")
    client.videos.delete(queued.id)


def read_mp4_bytes(data: bytes) -> np.ndarray:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        return read_mp4(f.name)[0]


def test_delete_removes_the_job_and_its_files(client, server):
    video = client.videos.create_and_poll(prompt="a yellow box sits still", seconds="1", poll_interval_ms=100)
    videos = os.path.join(data_dir(server), "videos")
    assert sorted(f for f in os.listdir(videos) if f.startswith(video.id)) == [
        f"{video.id}.jpg", f"{video.id}.mp4", f"{video.id}.webp"]
    gone = client.videos.delete(video.id)
    assert (gone.id, gone.deleted, gone.object) == (video.id, True, "video.deleted")
    assert not [f for f in os.listdir(videos) if f.startswith(video.id)]
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)


def test_deleting_a_running_job_frees_the_worker(client):
    slow = client.videos.create(prompt="a red box sits still", **LONG_JOB)
    wait_for(lambda: client.videos.retrieve(slow.id).progress > 0, timeout=120)
    client.videos.delete(slow.id)
    quick = client.videos.create_and_poll(prompt="a blue ball moves up", seconds="1", poll_interval_ms=100)
    assert quick.status == "completed"


# --- errors: 4xx in OpenAI's shape ---------------------------------------------------------------

def _post_form(server, path, fields: dict, key=KEY_A):
    body = urllib.parse.urlencode(fields).encode()
    return http("POST", server.url + path, body, {"Authorization": f"Bearer {key}",
                                                   "Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.parametrize("fields, param, message", [
    ({"seconds": "2"}, "prompt", "prompt is required"),
    ({"prompt": "   "}, "prompt", "prompt is empty"),
    ({"prompt": "x", "size": "big"}, "size", "WIDTHxHEIGHT"),
    ({"prompt": "x", "size": "4096x4096"}, "size", "too large"),
    ({"prompt": "x", "seconds": "0"}, "seconds", "more than 0"),
    ({"prompt": "x", "seconds": "999"}, "seconds", "at most 20"),
    ({"prompt": "x", "seconds": "four"}, "seconds", "must be a number"),
    ({"prompt": "x", "model": "gpt-9"}, "model", "not served here"),
    ({"prompt": "x", "colour": "red"}, "colour", "unknown parameter"),
    ({"prompt": "x", "steps": "0"}, "steps", "between 1"),
    ({"prompt": "x", "input_reference[image_url]": "https://example.invalid/a.png"}, "input_reference",
     "must be a base64 data URL"),
    ({"prompt": "x", "input_reference[image_url]": "data:image/png;base64,@@"}, "input_reference", "invalid base64"),
    ({"prompt": "x", "input_reference[file_id]": "file_1"}, "input_reference", "no Files API"),
])
def test_bad_create_requests_are_400_in_openai_shape(server, fields, param, message):
    status, body, _ = _post_form(server, "/v1/videos", fields)
    assert status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert message in body["error"]["message"]


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_checked(client):
    with pytest.raises(openai.BadRequestError, match="is not an image"):
        client.videos.create(prompt="x", input_reference=("a.png", b"not an image", "image/png"))
    with pytest.raises(openai.BadRequestError, match="larger than"):
        client.videos.create(prompt="x", input_reference=("a.png", b"0" * (10 * 2**20 + 1), "image/png"))
    rgba = io.BytesIO()
    Image.new("RGBA", (32, 32), "red").save(rgba, format="PNG")
    with pytest.raises(openai.BadRequestError, match="has transparency"):
        client.videos.create(prompt="x", input_reference=("a.png", rgba.getvalue(), "image/png"))


def close(a: np.ndarray, b: np.ndarray, within: float = 6.0) -> bool:
    """Frames alike up to the watermark and H.264: mean absolute difference in 0-255."""
    return float(np.abs(a.astype(np.float64) - b).mean()) < within


IMAGE = np.stack(np.broadcast_arrays(np.linspace(0, 255, 40).astype(np.uint8)[None, :],
                                     np.linspace(255, 0, 24).astype(np.uint8)[:, None],
                                     np.full((24, 40), 90, np.uint8)), -1)  # (24, 40, 3): a colour ramp


def test_image_to_video_starts_with_the_image(client, server):
    video = client.videos.create_and_poll(prompt="a red ball falls", seconds="1", size="48x32", poll_interval_ms=100,
                                          input_reference=("ramp.png", png(IMAGE), "image/png"))
    assert video.status == "completed" and (video.size, video.seconds) == ("48x32", "1"), video
    frames = read_mp4_bytes(client.videos.download_content(video.id).read())
    assert frames.shape == (8, 32, 48, 3)
    assert close(frames[0], resize(IMAGE[None], 48, 32)[0])  # cropped to 3:2, then resized
    assert not close(frames[0], resize(IMAGE[None], 48, 32)[0][::-1])  # (the ramp is no flat colour)
    # the same image as a data URL, with no size: the video takes the image's aspect ratio
    wide = resize(IMAGE[None], 64, 32)[0]
    url = "data:image/png;base64," + base64.b64encode(png(wide)).decode()
    video = client.videos.create(prompt="a red ball falls", seconds="1",
                                 **by_reference("input_reference", image_url=url))
    assert video.size == "64x32"
    remix = client.videos.remix(client.videos.poll(video.id, poll_interval_ms=100).id, prompt="a blue ball falls")
    remix = client.videos.poll(remix.id, poll_interval_ms=100)
    assert remix.status == "completed" and remix.size == "64x32"
    first = read_mp4_bytes(client.videos.download_content(remix.id).read())[0]
    assert close(first, wide)  # a remix keeps the image
    inputs = os.path.join(data_dir(server), "inputs")
    assert os.listdir(os.path.join(inputs, remix.id)) == ["image.png"]
    client.videos.delete(remix.id)
    assert not os.path.exists(os.path.join(inputs, remix.id))  # a video's inputs go with it


def by_reference(name: str, **reference) -> dict:
    """The openai client's create/extend/edit arguments for an object reference ({"image_url": ...},
    {"id": ...}): openai 3.x checks these fields as file uploads only and refuses a dict, so the
    reference goes in extra_body, which the client sends in the same form (name[key]=value)."""
    return {name: openai.omit, "extra_body": {name: reference}}


def test_extension_continues_a_completed_video(client, server):
    source = client.videos.create_and_poll(prompt="a red ball moves right", seconds="1", size="48x32",
                                           poll_interval_ms=100)
    ext = client.videos.extend(prompt="the red ball keeps moving right", seconds="2",
                               **by_reference("video", id=source.id))
    assert ext.remixed_from_video_id == source.id and (ext.seconds, ext.size) == ("3", "48x32")
    kept = read_mp4_bytes(client.videos.download_content(source.id).read())
    client.videos.delete(source.id)  # the extension keeps its own copy of the source
    done = client.videos.poll(ext.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    frames = read_mp4_bytes(client.videos.download_content(done.id).read())
    assert frames.shape == (3 * 8, 32, 48, 3)
    assert close(frames[:8], kept)  # the source, unchanged, then two seconds more
    assert done.provenance["framecast"]


def test_edit_remakes_a_completed_video(client):
    source = client.videos.create_and_poll(prompt="a red ball moves right", seconds="1", poll_interval_ms=100)
    edit = client.videos.edit(prompt="a blue ball moves right", video=openai.omit,
                              extra_body={"video": {"id": source.id}, "strength": 0.5, "seed": 3})
    assert edit.remixed_from_video_id == source.id and (edit.seconds, edit.size) == (source.seconds, source.size)
    done = client.videos.poll(edit.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    frames = read_mp4_bytes(client.videos.download_content(done.id).read())
    assert frames.shape == read_mp4_bytes(client.videos.download_content(source.id).read()).shape
    other = client.videos.edit(prompt="a blue ball moves right", video=openai.omit,
                               extra_body={"video": {"id": source.id}, "strength": 0.5, "seed": 3, "method": "sdedit"})
    other = client.videos.poll(other.id, poll_interval_ms=100)
    assert other.status == "completed", other.error
    assert not np.array_equal(read_mp4_bytes(client.videos.download_content(other.id).read()), frames)
    with pytest.raises(openai.BadRequestError, match="method must be one of flowedit, sdedit") as err:
        client.videos.edit(prompt="a blue ball", video=openai.omit,
                           extra_body={"video": {"id": source.id}, "method": "inpaint"})
    assert err.value.body["param"] == "method"


def test_extensions_and_edits_need_a_completed_video_of_the_caller(client, server):
    for call in (lambda **v: client.videos.extend(prompt="more", seconds="4", **v),
                 lambda **v: client.videos.edit(prompt="another", **v)):
        with pytest.raises(openai.NotFoundError) as err:
            call(**by_reference("video", id="video_nope"))
        assert err.value.body["param"] == "video" and err.value.code == "not_found"
        with pytest.raises(openai.BadRequestError, match="uploading a video is not supported"):
            call(video=("a.mp4", b"\0" * 64, "video/mp4"))
    mine = client.videos.create(prompt="a red box sits still", **LONG_JOB)
    with pytest.raises(openai.BadRequestError, match="only a completed video can be extended"):
        client.videos.extend(prompt="more", seconds="4", **by_reference("video", id=mine.id))
    with pytest.raises(openai.NotFoundError):  # another key's video is as good as missing
        server.client(KEY_B).videos.edit(prompt="another", **by_reference("video", id=mine.id))
    client.videos.delete(mine.id)


def test_other_errors(server, client):
    auth = {"Authorization": f"Bearer {KEY_A}"}
    cases = [
        ("GET", "/v1/videos/video_nope", 404, "not found"),
        ("GET", "/v1/videos/video_nope/content", 404, "not found"),
        ("POST", "/v1/videos/video_nope/remix", 404, "not found"),
        ("GET", "/v1/videos?limit=0", 400, "limit must be"),
        ("GET", "/v1/videos?limit=x", 400, "limit"),
        ("GET", "/v1/videos?order=up", 400, "order must be"),
        ("GET", "/v1/videos?after=video_nope", 400, "no video with id"),
        ("GET", "/v1/nothing", 404, "Invalid URL"),
        ("POST", "/v1/videos/extensions", 400, "video is required"),
        ("POST", "/v1/videos/edits", 400, "video is required"),
    ]
    for method, path, status, message in cases:
        got, body, _ = http(method, server.url + path, b"" if method == "POST" else None, auth)
        assert got == status and message in body["error"]["message"], (path, body)
    status, body, _ = http("POST", server.url + "/v1/videos", b"{not json", {**auth, "Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    slow = client.videos.create(prompt="a red box sits still", **LONG_JOB)
    with pytest.raises(openai.BadRequestError, match="content exists once it is completed"):
        client.videos.download_content(slow.id)
    with pytest.raises(openai.BadRequestError, match="variant"):
        client.videos.download_content(slow.id, variant="poster")
    client.videos.delete(slow.id)


# --- API keys ------------------------------------------------------------------------------------

def test_api_keys_are_required_and_keep_videos_apart(server, client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY_A}):
        status, body, _ = http("GET", server.url + "/v1/videos", None, headers)
        assert status == 401 and body["error"]["code"] == "invalid_api_key", headers
    with pytest.raises(openai.AuthenticationError):
        server.client("wrong").videos.list()
    mine = client.videos.create_and_poll(prompt="a purple ball", seconds="1", poll_interval_ms=100)
    theirs = server.client(KEY_B)
    assert mine.id not in [v.id for v in theirs.videos.list()]
    for call in (lambda: theirs.videos.retrieve(mine.id), lambda: theirs.videos.download_content(mine.id),
                 lambda: theirs.videos.delete(mine.id), lambda: theirs.videos.remix(mine.id, prompt="x")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert client.videos.retrieve(mine.id).status == "completed"
    # the studio and the health check need no key
    status, page, _ = http("GET", server.url + "/")
    assert status == 200 and b"<textarea" in page and b"studio.js" in page
    for asset in ("studio.js", "studio.css"):
        assert http("GET", f"{server.url}/studio/{asset}")[0] == 200
    # the studio's form offers every field of the create endpoint, and only those
    create = re.search(r'<form id="create">.*?</form>', page.decode(), re.S).group(0)
    fields = set(re.findall(r'<(?:input|select|textarea)\s[^>]*name="(\w+)"', create))
    assert fields == {"prompt", "size", "seconds", "input_reference", *EXTRA_FIELDS}
    assert http("GET", server.url + "/info")[1]["auth"] is True


# --- durability ----------------------------------------------------------------------------------

def test_a_dead_worker_is_replaced_and_its_job_runs_again(client, server):
    slow = client.videos.create(prompt="a red box sits still", **LONG_JOB)
    wait_for(lambda: client.videos.retrieve(slow.id).progress > 0, timeout=120)
    (pid,) = server.health()["pool"]["pids"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (h := server.health())["pool"]["pids"] != [pid] and h["pool"]["ready"] == 1, timeout=120)
    assert client.videos.poll(slow.id, poll_interval_ms=200).status == "completed"


def test_kill_9_mid_job_then_restart_finishes_every_job(model_dir, tmp_path):
    data = tmp_path / "data"
    first = Server(model_dir, data)
    try:
        first.wait_ready()
        c = first.client()
        slow = c.videos.create(prompt="a red box sits still", **LONG_JOB)
        queued = c.videos.create(prompt="a green box sits still", seconds="1", size="48x32",
                                 input_reference=("ramp.png", png(IMAGE), "image/png"))  # kept on disk
        wait_for(lambda: c.videos.retrieve(slow.id).progress > 0, timeout=120)
        (worker,) = first.health()["pool"]["pids"]
        first.kill()
        wait_for(lambda: not pid_alive(worker), timeout=30)  # the worker does not outlive its server
    finally:
        first.stop()
    second = Server(model_dir, data)
    try:
        second.wait_ready()
        # a third server on the same data folder is refused while the second runs
        res = subprocess.run(command("serve", "--model", model_dir, "--data", data, "--port", "0"),
                             capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 2 and "in use by another framecast server" in res.stderr, res.stderr
        c = second.client()
        done = [c.videos.poll(v.id, poll_interval_ms=200) for v in (slow, queued)]
        assert [v.status for v in done] == ["completed", "completed"], done
        frames = read_mp4_bytes(c.videos.download_content(slow.id).read())
        assert frames.shape == (4 * int(META.fps), 64, 64, 3)
        assert close(read_mp4_bytes(c.videos.download_content(queued.id).read())[0], resize(IMAGE[None], 48, 32)[0])
    finally:
        second.stop()
    assert "put back in the queue" in second.output()


def test_a_model_that_will_not_load_is_reported_not_queued_forever(model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")  # config.json is fine: serve starts
    srv = Server(broken, tmp_path / "data")
    def unavailable():
        try:
            status, body, _ = http("GET", srv.url + "/healthz")
        except OSError:  # not listening yet
            return None
        return body if status == 503 else None

    try:
        body = wait_for(unavailable, timeout=120, every=0.2)
        assert body["status"] == "broken" and "could not load the model" in body["pool"]["error"]
        with pytest.raises(openai.InternalServerError, match="could not load the model"):
            srv.client().videos.create(prompt="a red ball")
    finally:
        srv.stop()


@pytest.mark.parametrize("args, message", [
    (["--model", "/nowhere"], "no model folder at /nowhere"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--port", "70000"], "--port must be between"),
])
def test_serve_bad_input_exits_2(args, message, model_dir):
    if "--model" not in args:
        args = ["--model", str(model_dir), *args]
    res = subprocess.run(command("serve", *args), capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_openapi_document_lists_the_videos_routes(server):
    status, doc, _ = http("GET", server.url + "/openapi.json")
    assert status == 200
    assert {"/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/videos/{video_id}/remix",
            "/v1/videos/extensions", "/v1/videos/edits"} <= set(doc["paths"]), json.dumps(sorted(doc["paths"]))


def test_a_prompt_expansion_cannot_make_is_refused_at_once_unless_expand_is_off(client):
    with pytest.raises(openai.BadRequestError, match="names no object"):
        client.videos.create(prompt="a cat plays the piano", seconds="1")
    video = client.videos.create_and_poll(prompt="a cat plays the piano", seconds="1", poll_interval_ms=100,
                                          extra_body={"expand": False, "steps": 2})
    assert video.status == "completed", video.error


def test_a_prompt_the_policy_refuses_is_a_400_content_policy_violation(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.videos.create(prompt="a gory beheading of a man", seconds="1")
    assert err.value.status_code == 400 and err.value.code == "content_policy_violation"
    assert not [v for v in client.videos.list() if "beheading" in v.prompt]  # nothing was queued

// The framecast studio: a page over the same /v1/videos API that the openai client uses.
// Plain JS, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const KEY_STORE = "framecast-api-key";
const FAST_POLL_MS = 700;   // while a video is queued or rendering
const SLOW_POLL_MS = 4000;  // otherwise: another tab or client may add videos
const cards = new Map();    // video id -> {el, status, media}
let pollTimer = null;
let info = null;            // the server's /info: model, sizes, limits, whether it takes given frames

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = localStorage.getItem(KEY_STORE);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) {
    $("#key-form").hidden = false;
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error.message || message; } catch (_) { /* not JSON */ }
    throw new ApiError(message);
  }
  return res;
}

// --- the form -------------------------------------------------------------------------------
function snap(value, multiple) {
  return Math.max(multiple, Math.round(value / multiple) * multiple);
}

function sizeChoices(info) {
  const [w, h] = info.size.split("x").map(Number);
  const [mw, mh] = info.multiple;
  const sizes = [[w, h], [snap(w * 16 / 9, mw), h], [w, snap(h * 16 / 9, mh)], [snap(w * 1.5, mw), snap(h * 1.5, mh)],
                 [snap(w * 2, mw), snap(h * 2, mh)]];
  const seen = new Set();
  return sizes.filter(([a, b]) => a * b <= info.max_pixels)
    .map(([a, b]) => `${a}x${b}`).filter((s) => !seen.has(s) && seen.add(s));
}

function fillForm() {
  $("#model").textContent = `${info.model} · ${info.size} at ${info.fps} fps`;
  const size = $("#size");
  for (const s of sizeChoices(info)) size.add(new Option(s === info.size ? `${s} (native)` : s, s));
  const seconds = $("#seconds");
  for (const s of [1, 2, 4, 8, 12, 16, 20].filter((s) => s <= info.max_seconds)) seconds.add(new Option(`${s} s`, s));
  seconds.value = info.max_seconds >= 4 ? "4" : seconds.options[0].value;
  if (!info.image_to_video) {
    const image = $("#image");
    image.disabled = true;
    image.parentElement.title = "image-to-video is not supported by this server's model";
  }
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("#form-error");
  const button = $("#submit");
  error.hidden = true;
  button.disabled = true;
  const body = new FormData();
  for (const [name, value] of new FormData(form)) {
    if (value instanceof File ? value.size > 0 : String(value).trim() !== "") body.append(name, value);
  }
  try {
    const video = await (await api("/v1/videos", { method: "POST", body })).json();
    show(video, true);
    $("#prompt").value = "";
    $("#image").value = "";
    schedule(FAST_POLL_MS);
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// --- the gallery ----------------------------------------------------------------------------
const STATUS_TEXT = { queued: "queued", in_progress: "rendering", completed: "done", failed: "failed" };

function show(video, atTop = false) {
  let card = cards.get(video.id);
  if (!card) {
    const el = $("#card-template").content.firstElementChild.cloneNode(true);
    el.dataset.id = video.id;
    $(".delete", el).addEventListener("click", () => remove(video.id));
    setUpFollow($(".follow", el), video.id);
    card = { el, status: null, media: null };
    cards.set(video.id, card);
    const list = $("#videos");
    atTop ? list.prepend(el) : list.append(el);
  }
  const el = card.el;
  el.dataset.status = video.status;
  $(".prompt", el).textContent = video.prompt;
  const remixed = video.remixed_from_video_id ? " · from an earlier video" : "";
  $(".meta", el).textContent = `${video.size} · ${video.seconds} s · ${video.model}${remixed}`;
  showProvenance($(".provenance", el), video.provenance);
  $("progress", el).value = video.progress;
  const pct = video.status === "in_progress" ? ` ${video.progress}%` : "";
  $(".status", el).textContent = STATUS_TEXT[video.status] + pct;
  $(".placeholder", el).textContent = video.status === "failed" ? "no video" : STATUS_TEXT[video.status] + "…";
  const err = $(".error", el);
  err.hidden = !video.error;
  err.textContent = video.error ? `${video.error.code}: ${video.error.message}` : "";
  if (video.status === "completed" && !card.media) card.media = loadMedia(video, el);
  card.status = video.status;
  $("#empty").hidden = cards.size > 0;
}

// What the server found in the finished mp4: its C2PA content credentials and its watermark.
function showProvenance(el, p) {
  el.hidden = !p;
  if (!p) return;
  const signed = p.c2pa === "valid" || p.c2pa === "trusted";
  const mark = (ok) => (ok ? "\u2713" : "\u2717");
  el.textContent = `${mark(signed)} C2PA credentials · ${mark(p.watermark)} watermark`;
  el.dataset.ok = String(signed && p.watermark);
  el.title = p.verdict;
}

// The video is fetched with the API key (a <video src> could not send it) and played from a blob.
async function loadMedia(video, el) {
  try {
    const blob = await (await api(`/v1/videos/${video.id}/content`)).blob();
    const url = URL.createObjectURL(blob);
    const player = $("video", el);
    player.src = url;
    player.hidden = false;
    $(".placeholder", el).hidden = true;
    player.play().catch(() => { /* autoplay may be refused; the controls remain */ });
    const link = $(".download", el);
    link.href = url;
    link.download = `${video.id}.mp4`;
    link.hidden = false;
    $(".follow", el).hidden = false;
    return url;
  } catch (e) {
    const err = $(".error", el);
    err.textContent = `could not load the video: ${e.message}`;
    err.hidden = false;
    return null;
  }
}

async function remove(id) {
  try {
    await api(`/v1/videos/${id}`, { method: "DELETE" });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  const card = cards.get(id);
  if (card) {
    if (typeof card.media === "string") URL.revokeObjectURL(card.media);
    card.el.remove();
    cards.delete(id);
  }
  $("#empty").hidden = cards.size > 0;
}

// What a finished video can lead to: a remix (a new prompt, the same settings), an edit (the
// video remade to a new prompt, its motion kept) or an extension (the video, then more of it).
const FOLLOW = {
  remix: { label: "Remix", placeholder: "remix: a new prompt", path: (id) => `/v1/videos/${id}/remix`,
           fields: () => ({}) },
  edit: { label: "Edit", placeholder: "edit: the video as it should be", path: () => "/v1/videos/edits",
          fields: (id) => ({ video: { id } }) },
  extend: { label: "Extend", placeholder: "extend: what happens next", path: () => "/v1/videos/extensions",
            fields: (id, form) => ({ video: { id }, seconds: form.elements.seconds.value }) },
};

function setUpFollow(form, id) {
  const { action, seconds } = form.elements;
  const given = !info || info.image_to_video;  // edits and extensions need a model that takes given frames
  for (const option of action.options) option.disabled = option.value !== "remix" && !given;
  const limit = info ? info.max_seconds : 4;
  for (const s of [1, 2, 4, 8].filter((s) => s <= limit)) seconds.add(new Option(`+${s} s`, s));
  seconds.value = limit >= 2 ? "2" : seconds.options[0].value;
  const update = () => {
    const kind = FOLLOW[action.value];
    $("button", form).textContent = kind.label;
    form.elements.prompt.placeholder = kind.placeholder;
    seconds.hidden = action.value !== "extend";
  };
  action.addEventListener("change", update);
  update();
  form.addEventListener("submit", (e) => follow(e, id));
}

async function follow(event, id) {
  event.preventDefault();
  const form = event.target;
  const kind = FOLLOW[form.elements.action.value];
  const body = { prompt: form.elements.prompt.value, ...kind.fields(id, form) };
  try {
    const video = await (await api(kind.path(id), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    form.elements.prompt.value = "";
    show(video, true);
    schedule(FAST_POLL_MS);
  } catch (e) {
    const err = $(".error", cards.get(id).el);
    err.textContent = e.message;
    err.hidden = false;
  }
}

async function refresh() {
  let busy = false;
  try {
    const page = await (await api("/v1/videos?limit=100")).json();
    const ids = new Set(page.data.map((v) => v.id));
    for (const id of [...cards.keys()]) if (!ids.has(id)) { cards.get(id).el.remove(); cards.delete(id); }
    const list = $("#videos");
    page.data.forEach((video, i) => {
      show(video);
      // keep the server's order (newest first), moving only what is out of place: a moved video pauses
      const el = cards.get(video.id).el;
      if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
      busy ||= video.status === "queued" || video.status === "in_progress";
    });
    $("#empty").hidden = cards.size > 0;
  } catch (e) {
    if (!(e instanceof ApiError)) console.error(e);
  }
  schedule(busy ? FAST_POLL_MS : SLOW_POLL_MS);
}

function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refresh, ms);
}

async function start() {
  $("#create").addEventListener("submit", submit);
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_STORE, $("#key").value.trim());
    $("#key-form").hidden = true;
    refresh();
  });
  try {
    info = await (await fetch("/info")).json();
    fillForm();
  } catch (e) {
    $("#model").textContent = `cannot reach the server: ${e.message}`;
  }
  refresh();
}

start();

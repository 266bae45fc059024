// The upload page's script (index.html, page.css; the server puts the model's `info`,
// `ColorizeService.info`, in index.html as JSON). Nothing is loaded from elsewhere.
//
// What it offers, from INFO:
// * a file chooser and a drop target (the whole page); the first file dropped or chosen is
//   colorized at once, with an upload/progress bar while the model runs, and a message for
//   every refusal (no file, several files, not an image, too big: in the page; everything
//   else: the server's words);
// * INFO.examples: photos to try with one click (scikit-image's, served by the server as
//   small JPEGs): large on the right before any result, a strip on the left after; a click
//   sends the example like an upload;
// * INFO.evaluation: the export's own figures against leaving the photos gray, in words;
// * a before/after comparison: the colour result under the gray input, a range slider (a
//   keyboard control too) moving the divider, and a download link for what is shown; in a
//   wide window all three fit in the window (no scrolling after colorizing);
// * INFO.samples (VAE, diffusion): a samples count; the samples as a gallery, one of them
//   in the comparison;
// * INFO.temperature (classification models: the default T, not null): a temperature
//   slider (0.05 to 1, step 0.01, starting at the default), sent with the upload;
// * INFO.hints: click on the photo to place a colour point; each point has a colour input
//   and the model's own colour there (read from the result, a suggestion), can be dragged
//   or moved with the arrow keys, deleted (Delete key or button); Undo (and Ctrl+Z); every
//   change colorizes again with the points sent as the form field `hints`;
// * INFO.video (PyAV installed): a short clip may be dropped or chosen too (a video type, or
//   a video file name when the browser gives no type; never an AVIF or HEIC/HEIF name, which
//   are photos in the same container as MP4, whatever type a system gives them); it is
//   posted to api/colorize_video with the "stabilise colours" checkbox (shown once a clip
//   is chosen; on by default), and the answer (an MP4 the browser plays) is shown in a
//   <video controls> element with a download link. While it runs: the upload's progress,
//   then an indeterminate bar (the server answers when the whole clip is done). "Colorize
//   again" redoes it (e.g. after the checkbox).
//
// Before any upload the only images are the examples (no broken-image placeholder).
"use strict";
const INFO = JSON.parse(document.getElementById("info").textContent);
const $ = (id) => document.getElementById(id);
const MIB = 1048576;
// answered: requests finished (shown or refused) and uploads refused in the page.
const S = { file: null, video: false, out: null, shown: 0, hints: [], history: [], active: -1,
            xhr: null, generation: 0, timer: null, answered: 0, clipURL: null, pick: 0 };

// -- the controls the model has --
$("about").textContent = ["a " + INFO.family + " model, trained for " + INFO.step +
  " steps at " + INFO.size + " px",
  INFO.samples ? "draws several colourings of a photo: choose how many" : null,
  INFO.hints ? "takes colour hints: click the photo" : null].filter(Boolean).join(" \u00b7 ");
$("evaluation").textContent = INFO.evaluation ? INFO.evaluation.words :
  "This export holds no evaluation figures (its run was never evaluated, or it was " +
  "converted from another framework), so there is nothing to compare with leaving photos gray.";
const FORMAT_NAMES = { JPEG: "JPEG", PNG: "PNG", WEBP: "WebP", TIFF: "TIFF", BMP: "BMP",
                       GIF: "GIF", PPM: "PPM", AVIF: "AVIF" };
const formats = (INFO.photo_formats || ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM"])
  .map((f) => FORMAT_NAMES[f] || f);
$("limits").textContent = formats.slice(0, -1).join(", ") + " or " + formats[formats.length - 1] +
  "; at most " +
  mib(INFO.max_upload_mb) + " MiB and " + (INFO.max_pixels / 1e6).toFixed(1) + " megapixels." +
  (INFO.video ? " Clips (MP4, MOV, MKV, WebM, ...): at most " + mib(INFO.max_video_mb) +
   " MiB, " + INFO.max_video_seconds + " s and " + INFO.max_video_frames + " frames." : "");
if (INFO.video) $("choose").textContent = "Choose a photo or a clip";
if (INFO.samples) {
  for (let n = 1; n <= INFO.max_samples; n++) $("samples").add(new Option(n, n));
  $("samples-label").hidden = false; $("samples").disabled = false;
}
if (INFO.temperature !== null && INFO.temperature !== undefined) {
  const t = $("temperature");
  t.value = Math.min(1, Math.max(0.05, INFO.temperature));
  const show = () => { $("temperature-value").textContent = Number(t.value).toFixed(2); };
  t.addEventListener("input", show); show();
  $("temperature-label").hidden = false; t.disabled = false;
}
// Colorize again: for new settings (samples, temperature); hints colorize again by themselves.
const GO_FOR_PHOTOS = !!INFO.samples || (INFO.temperature !== null && INFO.temperature !== undefined);
$("go").hidden = !GO_FOR_PHOTOS;
function mib(x) { return x >= 10 ? x.toFixed(0) : String(Number(x.toPrecision(2))); }

function status(text, error) {
  $("status").textContent = text; $("status").className = error ? "error" : "";
}
function busy(text, fraction) {
  $("busy").hidden = text === null;
  $("busy-text").textContent = text || "";
  const p = $("progress");
  if (fraction === undefined) p.removeAttribute("value"); else p.value = fraction;
  $("result").setAttribute("aria-busy", text === null ? "false" : "true");
}

// -- choosing a file: the chooser or a drop --
function reject(text) { busy(null); status(text, true); S.answered++; }
function accept(files) {
  if (!files || files.length === 0) return reject("Nothing to colorize: drop or choose a photo file.");
  if (files.length > 1) return reject(files.length + " files were given: drop or choose one photo at a time.");
  const file = files[0], video = isClip(file);
  if (file.type && !file.type.startsWith("image/") && !video)
    return reject(file.name + " is not an image (" + file.type + "): choose a photo" +
                  (INFO.video ? " or a video clip." : "."));
  if (file.size === 0) return reject(file.name + " is empty: choose a photo" +
                                     (video ? " or a clip." : "."));
  const limit = video ? INFO.max_video_mb : INFO.max_upload_mb;
  if (file.size > limit * MIB)
    return reject(file.name + " is " + mib(file.size / MIB) + " MiB; the limit is " +
                  mib(limit) + " MiB" + (video ? " for clips." : "."));
  S.file = file; S.video = video; S.hints = []; S.history = []; S.active = -1; S.out = null;
  $("go").disabled = false; $("go").hidden = !(video || GO_FOR_PHOTOS);
  $("stabilize-label").hidden = !video;  // a clip's option only
  if (video) runClip(true); else run(true);
}
// A clip: a video type, or (no type or a generic one, as for .mkv on some systems) a video
// file name; the server checks the content either way. AVIF and HEIC/HEIF files are photos
// (some systems type image sequences such as .heics as video/*): never sent as clips.
const CLIP_EXT = /\.(mp4|m4v|mov|mkv|webm|avi|mpe?g|wmv|flv|ogv|3gp|ts|mts)$/i;
const PHOTO_EXT = /\.(avifs?|heics?|heifs?|hif)$/i;
function isClip(file) {
  if (!INFO.video || PHOTO_EXT.test(file.name) || file.type.startsWith("image/")) return false;
  if (file.type) return file.type.startsWith("video/") ||
    (file.type === "application/octet-stream" && CLIP_EXT.test(file.name));
  return CLIP_EXT.test(file.name);
}
$("file").addEventListener("change", () => { pressExample(null); accept($("file").files); });

// -- examples: a click fetches the JPEG and sends it like a chosen file --
function pressExample(name) {
  S.pick++;  // an example still loading is not wanted any more
  document.querySelectorAll(".example").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.name === name)));
}
function tryExample(ex) {
  pressExample(ex.name);
  const pick = S.pick;
  if (S.xhr) { S.xhr.abort(); S.xhr = null; }
  S.generation++;
  busy("Loading the example " + ex.name + " ..."); status("");
  fetch(ex.url).then((r) => {
    if (!r.ok) throw new Error("HTTP " + r.status + " " + r.statusText);
    return r.blob();
  }).then((blob) => {
    if (pick === S.pick) accept([new File([blob], ex.name + ".jpg", { type: "image/jpeg" })]);
  }).catch((e) => {
    if (pick === S.pick) reject("The example " + ex.name + " could not be loaded: " + e.message);
  });
}
$("examples").hidden = !(INFO.examples && INFO.examples.length);
$("example-row").replaceChildren(...(INFO.examples || []).map((ex) => {
  const b = document.createElement("button"); b.type = "button"; b.className = "example";
  b.dataset.name = ex.name; b.setAttribute("aria-pressed", "false");
  b.setAttribute("aria-label", "colorize the example " + ex.name + ": " + ex.caption);
  b.title = ex.caption;
  const img = new Image(); img.src = ex.url; img.alt = ""; img.draggable = false;
  const cap = document.createElement("span"); cap.textContent = ex.caption;
  b.append(img, cap); b.addEventListener("click", () => tryExample(ex));
  return b;
}));
// A photo dropped anywhere on the page (the dashed box says so) is taken, never opened by the
// browser in place of the page.
const drop = $("drop");
let depth = 0;
window.addEventListener("dragenter", (ev) => { ev.preventDefault(); depth++; drop.classList.add("over"); });
window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; drop.classList.remove("over"); } });
window.addEventListener("dragover", (ev) => { ev.preventDefault(); });
window.addEventListener("drop", (ev) => {
  ev.preventDefault(); depth = 0; drop.classList.remove("over"); pressExample(null);
  accept(ev.dataTransfer ? ev.dataTransfer.files : null);
});
$("form").addEventListener("submit", (ev) => { ev.preventDefault();
  if (!S.file) return reject("Choose a photo first.");
  if (S.video) runClip(false); else run(false); });

// -- talking to the server --
function hintsJSON() {
  return JSON.stringify(S.hints.map((h) => ({ x: h.x, y: h.y, rgb: h.rgb })));
}
function run(fresh) {
  clearTimeout(S.timer); S.timer = null;
  if (S.xhr) S.xhr.abort();
  const gen = ++S.generation, file = S.file;
  const body = new FormData();
  body.append("image", file);
  if (INFO.samples) body.append("num_samples", $("samples").value);
  if (!$("temperature").disabled) body.append("temperature", $("temperature").value);
  if (INFO.hints && S.hints.length) body.append("hints", hintsJSON());
  const xhr = post("api/colorize", "json", gen, file, fresh,
                   "Colorizing " + file.name + " with " + INFO.model + " ...");
  xhr.onload = () => {
    if (gen !== S.generation) return;
    S.xhr = null;
    const out = xhr.response;
    if (xhr.status !== 200 || !out || !out.colors) {
      const why = out && out.error ? out.error : ("HTTP " + xhr.status + " " + xhr.statusText);
      const what = xhr.status === 503 ? "The server is busy: " :
                   xhr.status >= 500 ? "The server failed: " : "Refused: ";
      return failed(fresh, what + why);
    }
    show(out, fresh).then(() => {
      if (gen !== S.generation) return;
      busy(null);
      status("Done: " + file.name + ", " + out.width + "\u00d7" + out.height + " px" +
        (out.num_samples > 1 ? ", " + out.num_samples + " samples" : "") +
        (out.temperature != null ? ", temperature " + Number(out.temperature).toFixed(2) : "") +
        (out.hints ? ", " + out.hints + " hint" + (out.hints > 1 ? "s" : "") : "") + ".");
      S.answered++;
    });
  };
  xhr.send(body);
}
// A POST of `file` whose upload shows in the progress bar, then `working` until the answer;
// a network error is reported. The caller sets onload and sends the body.
function post(url, responseType, gen, file, fresh, working) {
  const xhr = new XMLHttpRequest(); S.xhr = xhr;
  xhr.open("POST", url);
  xhr.responseType = responseType;
  busy("Uploading " + file.name + " ...", 0); status("");
  xhr.upload.onprogress = (e) => { if (gen === S.generation && e.lengthComputable)
    busy("Uploading " + file.name + " ... " + Math.round(100 * e.loaded / e.total) + "%",
         e.loaded / e.total); };
  xhr.upload.onload = () => { if (gen === S.generation) busy(working); };
  xhr.onerror = () => { if (gen !== S.generation) return; S.xhr = null;
    failed(fresh, "The request failed: the server could not be reached."); };
  return xhr;
}
function failed(fresh, text) {
  if (fresh) { $("result").hidden = true; S.out = null; hideClip(); }
  layout();
  reject(text);
}
// The page's two arrangements (page.css): examples large until a result is shown.
function layout() {
  const shown = !$("result").hidden || !$("clip-result").hidden;
  const was = document.body.classList.contains("has-result");
  document.body.classList.toggle("has-result", shown);
  // One column (a phone): bring a new result into view.
  if (shown && !was && $("view").getBoundingClientRect().top > innerHeight / 2)
    $("view").scrollIntoView({ block: "start" });
}

// -- clips: posted to api/colorize_video, the answer (video/mp4) played in the page --
function hideClip() {
  $("clip-result").hidden = true; $("clip-stage").replaceChildren();
  if (S.clipURL) { URL.revokeObjectURL(S.clipURL); S.clipURL = null; }
}
function runClip(fresh) {
  clearTimeout(S.timer); S.timer = null;
  if (S.xhr) S.xhr.abort();
  const gen = ++S.generation, file = S.file, stab = $("stabilize").checked;
  const body = new FormData();
  body.append("video", file);
  body.append("stabilize", stab ? "1" : "0");
  const xhr = post("api/colorize_video", "blob", gen, file, fresh,
                   "Colorizing the clip " + file.name + " with " + INFO.model +
                   " (every frame: this takes a while) ...");
  xhr.onload = () => {
    if (gen !== S.generation) return;
    S.xhr = null;
    const blob = xhr.response;
    if (xhr.status !== 200 || !blob || blob.type !== "video/mp4") {
      const what = xhr.status === 503 ? "The server is busy: " :
                   xhr.status >= 500 ? "The server failed: " : "Refused: ";
      const fallback = "HTTP " + xhr.status + " " + xhr.statusText;
      return (blob ? blob.text() : Promise.resolve("")).then((text) => {
        if (gen !== S.generation) return;
        let why = fallback;
        try { const out = JSON.parse(text); if (out && out.error) why = out.error; } catch (e) { /* not JSON */ }
        failed(fresh, what + why);
      });
    }
    const h = (name) => xhr.getResponseHeader("X-Colorjax-" + name);
    showClip(blob, file).then((ok) => {
      if (gen !== S.generation) return;
      busy(null);
      if (!ok) { status("Colorized " + file.name + ", but this browser cannot play the MP4 " +
                        "(H.264): download it instead.", true); S.answered++; return; }
      status("Done: " + file.name + ", " + h("Width") + "\u00d7" + h("Height") + " px, " +
        h("Frames") + " frames, " + Number(h("Duration")).toFixed(2) + " s, colours " +
        (h("Stabilized") === "1" ? "stabilised" : "not stabilised") + ".");
      S.answered++;
    });
  };
  xhr.send(body);
}
function showClip(blob, file) {
  $("result").hidden = true;  // a photo's result is not this clip's
  document.body.classList.remove("many");
  hideClip();
  S.clipURL = URL.createObjectURL(blob);
  const v = document.createElement("video");
  v.id = "clip"; v.controls = true; v.playsInline = true; v.preload = "auto";  // a local blob: show its first frame at once
  v.setAttribute("aria-label", "the colorized clip");
  const a = $("clip-download");
  a.href = S.clipURL;
  a.download = (file.name.replace(/\.[^.]*$/, "") || "clip") + "_color.mp4";
  const ready = new Promise((resolve) => {
    v.addEventListener("loadedmetadata", () => {
      if (v.videoWidth && v.videoHeight)
        $("clip-stage").style.setProperty("--ratio", v.videoWidth / v.videoHeight);
      resolve(true);
    }, { once: true });
    v.addEventListener("error", () => resolve(false), { once: true });
  });
  v.src = S.clipURL;
  $("clip-stage").replaceChildren(v);
  $("clip-result").hidden = false;
  layout();
  return ready;
}
function schedule() {  // hints changed: colorize again shortly (a burst of moves is one request)
  clearTimeout(S.timer); S.timer = setTimeout(() => run(false), 250);
}

// -- the result: comparison, download, gallery --
function loaded(img) { return img.decode ? img.decode().catch(() => {}) : Promise.resolve(); }
function stem() { return S.file.name.replace(/\.[^.]*$/, "") || "photo"; }
function show(out, fresh) {
  const stage = $("stage");
  if (fresh || !S.out || !$("after")) {
    const after = new Image(), before = new Image();
    after.id = "after"; after.alt = "colorized photo"; after.draggable = false;
    before.id = "before"; before.alt = "gray input"; before.draggable = false;
    const divider = document.createElement("div"); divider.id = "divider";
    const tb = document.createElement("span"); tb.className = "tag"; tb.id = "tag-before";
    tb.textContent = "before";
    const ta = document.createElement("span"); ta.className = "tag"; ta.id = "tag-after";
    ta.textContent = "after";
    const markers = document.createElement("div"); markers.id = "markers";
    before.src = out.gray;
    stage.replaceChildren(after, before, divider, tb, ta, markers);
    stage.style.setProperty("--ratio", out.width / out.height);
    $("compare-row").style.setProperty("--ratio", out.width / out.height);
    stage.classList.toggle("hinting", !!INFO.hints);
    if (INFO.hints) { stage.tabIndex = 0;
      stage.setAttribute("aria-label", "the photo: click to place a colour point, or press " +
                         "Enter to place one in the middle"); }
    S.shown = 0;
  }
  S.out = out;
  S.shown = Math.min(S.shown, out.colors.length - 1);
  $("after").src = out.colors[S.shown];
  gallery(out);
  setDivider($("compare").value);
  $("hints-panel").hidden = !INFO.hints;
  hideClip();
  $("result").hidden = false;
  layout();
  renderHints();
  return Promise.all([loaded($("after")), loaded($("before"))]).then(() => {
    S.hints.forEach((h) => { h.suggestion = h.suggestion || sampleAt(h.x, h.y); });
    renderHints();
  });
}
function pick(i) {
  S.shown = i; $("after").src = S.out.colors[i];
  document.querySelectorAll("#gallery button").forEach((b, j) =>
    b.setAttribute("aria-pressed", String(j === i)));
  setDownload();
}
function setDownload() {
  const a = $("download"), many = S.out.colors.length > 1;
  a.href = S.out.colors[S.shown];
  a.download = stem() + (many ? "_sample" + (S.shown + 1) : "") + "_color.png";
  a.textContent = "Download" + (many ? " sample " + (S.shown + 1) : "");
}
function gallery(out) {
  const many = out.colors.length > 1;
  $("gallery-panel").hidden = !many;
  document.body.classList.toggle("many", many);  // a smaller stage: the gallery in the window
  $("gallery").replaceChildren(...(many ? out.colors.map((url, i) => {
    const fig = document.createElement("figure");
    const b = document.createElement("button"); b.type = "button"; b.className = "sample";
    b.setAttribute("aria-pressed", String(i === S.shown));
    b.setAttribute("aria-label", "show sample " + (i + 1));
    const img = new Image(); img.src = url; img.alt = "sample " + (i + 1); img.className = "color";
    b.append(img); b.addEventListener("click", () => pick(i));
    const cap = document.createElement("figcaption");
    const a = document.createElement("a"); a.className = "sample-download"; a.href = url;
    a.download = stem() + "_sample" + (i + 1) + "_color.png";
    a.textContent = "download sample " + (i + 1);
    cap.append(a); fig.append(b, cap); return fig;
  }) : []));
  setDownload();
}
function setDivider(v) {
  const before = $("before"); if (!before) return;
  before.style.clipPath = "inset(0 " + (100 - v) + "% 0 0)";
  $("divider").style.left = v + "%";
  $("tag-before").hidden = v < 12; $("tag-after").hidden = v > 88;
}
$("compare").addEventListener("input", (e) => setDivider(e.target.value));

// -- hints --
const HEX = (r, g, b) => "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("");
let probe = null;
function sampleAt(x, y) {
  // The model's own colour at (x, y): the shown result's pixel there.
  const img = $("after"); if (!img || !img.naturalWidth) return null;
  probe = probe || document.createElement("canvas"); probe.width = probe.height = 1;
  const ctx = probe.getContext("2d", { willReadFrequently: true });
  const px = Math.max(0, Math.min(img.naturalWidth - 1, Math.floor(x)));
  const py = Math.max(0, Math.min(img.naturalHeight - 1, Math.floor(y)));
  ctx.clearRect(0, 0, 1, 1);
  ctx.drawImage(img, px, py, 1, 1, 0, 0, 1, 1);
  const d = ctx.getImageData(0, 0, 1, 1).data;
  return HEX(d[0], d[1], d[2]);
}
function snapshot() { return JSON.stringify(S.hints); }
function remember(before) {
  S.history.push(before === undefined ? snapshot() : before);
  if (S.history.length > 200) S.history.shift();
}
function changed() { renderHints(); schedule(); }
function toPhoto(ev) {  // a pointer event -> photo pixels (full resolution)
  const r = $("after").getBoundingClientRect();
  const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
  return { x: Math.max(0, Math.min(S.out.width - 1, Math.floor(fx * S.out.width))),
           y: Math.max(0, Math.min(S.out.height - 1, Math.floor(fy * S.out.height))) };
}
function addHint(p) {
  if (S.hints.length >= INFO.max_hints) return reject("At most " + INFO.max_hints + " points.");
  remember();
  const suggestion = sampleAt(p.x, p.y) || "#808080";
  S.hints.push({ x: Math.floor(p.x), y: Math.floor(p.y), rgb: suggestion, suggestion });
  S.active = S.hints.length - 1;
  changed();
  focusMarker(S.active);
}
function removeHint(i) {
  remember(); S.hints.splice(i, 1);
  S.active = Math.min(S.active, S.hints.length - 1); changed();
  if (S.active >= 0) focusMarker(S.active); else $("compare").focus();
}
function undo() {
  if (!S.history.length) return;
  S.hints = JSON.parse(S.history.pop()); S.active = Math.min(S.active, S.hints.length - 1);
  changed();
}
function focusMarker(i) { const m = document.querySelector('.hint[data-i="' + i + '"]'); if (m) m.focus(); }
function renderHints() {
  if (!INFO.hints) return;
  const markers = $("markers"); if (!markers || !S.out) return;
  // What has the keyboard focus (a point, or a control of a point's row) keeps it.
  const had = document.activeElement, row = had && had.closest && had.closest("#hint-list li");
  const keep = had && had.classList && had.classList.contains("hint") ? '.hint[data-i="' + had.dataset.i + '"]'
    : row ? '#hint-list li[data-i="' + row.dataset.i + '"] .' + had.className.split(" ")[0] : null;
  markers.replaceChildren(...S.hints.map((h, i) => {
    const m = document.createElement("button"); m.type = "button"; m.className = "hint";
    if (i === S.active) m.classList.add("active");
    m.dataset.i = i; m.style.background = h.rgb;
    m.style.left = (100 * (h.x + 0.5) / S.out.width) + "%";
    m.style.top = (100 * (h.y + 0.5) / S.out.height) + "%";
    m.setAttribute("aria-label", "point " + (i + 1) + " at " + h.x + ", " + h.y + ", colour " + h.rgb +
                   " (arrow keys move it, Delete removes it)");
    return m;
  }));
  $("hint-list").replaceChildren(...S.hints.map((h, i) => {
    const li = document.createElement("li"); li.dataset.i = i;
    if (i === S.active) li.className = "active";
    const sel = document.createElement("button"); sel.type = "button"; sel.className = "select secondary";
    sel.textContent = "Point " + (i + 1) + " (" + h.x + ", " + h.y + ")";
    sel.addEventListener("click", () => { S.active = i; renderHints(); focusMarker(i); });
    const color = document.createElement("input"); color.type = "color"; color.className = "hint-color";
    color.value = h.rgb; color.setAttribute("aria-label", "colour of point " + (i + 1));
    let before = null;
    color.addEventListener("input", () => {
      if (before === null) before = snapshot();
      h.rgb = color.value; const m = document.querySelector('.hint[data-i="' + i + '"]');
      if (m) m.style.background = h.rgb;
    });
    color.addEventListener("change", () => {
      remember(before === null ? snapshot() : before); before = null;
      h.rgb = color.value; S.active = i; changed();
    });
    const sug = document.createElement("button"); sug.type = "button"; sug.className = "suggest swatch";
    const s = h.suggestion || "#808080"; sug.style.background = s;
    sug.title = "the model's colour here: " + s;
    sug.setAttribute("aria-label", "use the model's colour here, " + s);
    sug.addEventListener("click", () => { remember(); h.rgb = s; S.active = i; changed(); });
    const del = document.createElement("button"); del.type = "button"; del.className = "delete secondary";
    del.textContent = "Delete"; del.setAttribute("aria-label", "delete point " + (i + 1));
    del.addEventListener("click", () => removeHint(i));
    li.append(sel, color, document.createTextNode(" model: "), sug, del); return li;
  }));
  $("undo").disabled = !S.history.length;
  $("clear").disabled = !S.hints.length;
  if (keep && !document.body.contains(had)) { const el = document.querySelector(keep); if (el) el.focus(); }
}
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", () => { if (!S.hints.length) return;
  remember(); S.hints = []; S.active = -1; changed(); });
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z" && INFO.hints &&
      !(ev.target instanceof HTMLInputElement && ev.target.type === "text")) {
    ev.preventDefault(); undo(); return;
  }
  if (ev.target === $("stage") && INFO.hints && S.out && (ev.key === "Enter" || ev.key === " ")) {
    ev.preventDefault(); addHint({ x: S.out.width / 2, y: S.out.height / 2 }); return;
  }
  const m = ev.target.closest && ev.target.closest(".hint"); if (!m) return;
  const i = Number(m.dataset.i), h = S.hints[i];
  if (ev.key === "Delete" || ev.key === "Backspace") { ev.preventDefault(); removeHint(i); return; }
  const step = Math.max(1, Math.round(Math.max(S.out.width, S.out.height) / (ev.shiftKey ? 10 : 50)));
  const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
  if (!d) return;
  ev.preventDefault(); remember(); S.active = i;
  h.x = Math.max(0, Math.min(S.out.width - 1, h.x + d[0]));
  h.y = Math.max(0, Math.min(S.out.height - 1, h.y + d[1]));
  h.suggestion = sampleAt(h.x, h.y) || h.suggestion;
  changed(); focusMarker(i);
});
// Pointer: a press on the photo places a point; a press on a point selects it and drags it.
let drag = null;
$("stage").addEventListener("pointerdown", (ev) => {
  if (!INFO.hints || !S.out || ev.button !== 0) return;
  const m = ev.target.closest(".hint");
  if (m) {
    const i = Number(m.dataset.i);
    drag = { i, before: snapshot(), moved: false }; S.active = i;
    m.setPointerCapture(ev.pointerId); ev.preventDefault(); return;
  }
  if (ev.target.closest("#markers") === null && ev.target.closest("#stage")) addHint(toPhoto(ev));
});
$("stage").addEventListener("pointermove", (ev) => {
  if (!drag) return;
  const p = toPhoto(ev), h = S.hints[drag.i];
  h.x = p.x; h.y = p.y; drag.moved = true;
  const m = document.querySelector('.hint[data-i="' + drag.i + '"]');
  if (m) { m.style.left = (100 * (h.x + 0.5) / S.out.width) + "%";
           m.style.top = (100 * (h.y + 0.5) / S.out.height) + "%"; }
});
function endDrag() {
  if (!drag) return;
  const d = drag; drag = null;
  if (d.moved) { remember(d.before); const h = S.hints[d.i];
    h.suggestion = sampleAt(h.x, h.y) || h.suggestion; changed(); }
  else renderHints();
  focusMarker(d.i);
}
$("stage").addEventListener("pointerup", endDrag);
$("stage").addEventListener("pointercancel", endDrag);

"""The upload page: one HTML file with inline JS (nothing loaded from elsewhere).

For a classification model (`info["temperature"]` is its default T, not None) the page shows
a temperature slider (0.05 to 1, step 0.01, starting at the default) and sends its value.
"""

from __future__ import annotations

import html
import json


def render_page(info: dict) -> str:
    title = html.escape(f"colorjax: {info['model']} (step {info['step']})")
    return (PAGE.replace("__TITLE__", title)
            .replace("__INFO__", json.dumps(info).replace("</", "<\\/")))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 form { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
 #status { min-height: 1.5em; margin: .8rem 0; }
 #status.error { color: #b00020; }
 .pair { display: flex; gap: 1rem; flex-wrap: wrap; }
 figure { margin: 0; }
 figure img { max-width: 45vw; max-height: 70vh; border: 1px solid #ccc; }
 figcaption { font-size: .9rem; color: #555; }
 #temperature-label small { color: #555; }
</style></head>
<body>
<h1>__TITLE__</h1>
<form id="form">
  <input type="file" id="file" name="image" accept="image/*">
  <label id="samples-label" hidden>samples
    <select id="samples" name="num_samples" disabled></select></label>
  <label id="temperature-label" hidden>temperature
    <input type="range" id="temperature" name="temperature" min="0.05" max="1" step="0.01"
      disabled>
    <output id="temperature-value" for="temperature"></output>
    <small>(low = vivid, 1 = the mean)</small></label>
  <button type="submit" id="go">Colorize</button>
</form>
<div id="status"></div>
<div class="pair" id="result" hidden>
  <figure><img id="gray" alt="gray input"><figcaption>gray input</figcaption></figure>
  <div id="colors" class="pair"></div>
</div>
<script>
const INFO = __INFO__;
const $ = (id) => document.getElementById(id);
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
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) { status("Choose a photo first.", true); return; }
  if (file.size > INFO.max_upload_mb * 1048576) {
    status(`The file is ${(file.size / 1048576).toFixed(1)} MiB; the limit is ${INFO.max_upload_mb} MiB.`, true); return;
  }
  const body = new FormData();
  body.append("image", file);
  if (INFO.samples) body.append("num_samples", $("samples").value);
  if (!$("temperature").disabled) body.append("temperature", $("temperature").value);
  $("go").disabled = true; status("Colorizing " + file.name + " ...");
  try {
    const resp = await fetch("api/colorize", { method: "POST", body });
    const out = await resp.json();
    if (!resp.ok) { status(out.error || resp.statusText, true); return; }
    const stem = file.name.replace(/\\.[^.]*$/, "") || "photo";
    $("gray").src = out.gray;
    $("colors").replaceChildren(...out.colors.map((url, i) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = url; img.className = "color"; img.alt = "colorized";
      const cap = document.createElement("figcaption");
      const a = document.createElement("a");
      a.href = url; a.className = "download";
      a.download = stem + (out.colors.length > 1 ? "_sample" + (i + 1) : "") + "_color.png";
      a.textContent = "download" + (out.colors.length > 1 ? " sample " + (i + 1) : "");
      cap.append("colorized (" + out.width + "\\u00d7" + out.height + ") ", a);
      fig.append(img, cap); return fig;
    }));
    $("result").hidden = false;
    status("Done: " + file.name + ", " + out.width + "\\u00d7" + out.height + " px" +
           (out.temperature != null ? ", temperature " + Number(out.temperature).toFixed(2) : "") + ".");
  } catch (e) {
    status("The request failed: " + e, true);
  } finally { $("go").disabled = false; }
});
</script>
</body></html>
"""

"""The search page: one HTML document with its CSS and script inline (works offline, no CDN).

Results are built with DOM calls and ``textContent``, never ``innerHTML``, so a caption or label
holding markup shows as text. The service fills in ``__TITLE__`` (HTML-escaped).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rsvl archive search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2430; }
  h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
  form { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .6rem; margin-bottom: 1rem; }
  label { display: flex; flex-direction: column; font-size: .8rem; gap: .2rem; }
  input, select, button { font: inherit; padding: .35rem; }
  #text { grid-column: 1 / -1; font-size: 1.05rem; }
  #status { margin: .5rem 0; color: #555; min-height: 1.2em; }
  #status.error { color: #b00020; }
  #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: .8rem; }
  figure { margin: 0; border: 1px solid #d0d5dd; border-radius: 6px; padding: .4rem; position: relative; }
  figure img { width: 100%; image-rendering: pixelated; background: #000; }
  figcaption { font-size: .75rem; }
  .score { font-weight: 600; }
  .meta { display: none; position: absolute; left: 0; right: 0; top: 100%; z-index: 2; background: #fff;
          border: 1px solid #99a; padding: .4rem; font-size: .72rem; white-space: pre-wrap; }
  figure:hover .meta, figure:focus-within .meta { display: block; }
</style>
</head>
<body>
<h1 id="title">Archive search: __TITLE__</h1>
<form id="query">
  <input id="text" name="text" maxlength="1000" placeholder="ships moored along a quay" aria-label="query text">
  <label>image query <input id="image" type="file" accept=".png,.jpg,.jpeg,.tif,.tiff,.npy"></label>
  <label>results <input id="k" type="number" min="1" max="1000" value="24"></label>
  <label>modality <select id="modality"><option value="">any</option><option>sar</option><option>optical</option><option>multispectral</option></select></label>
  <label>split <select id="split"><option value="">any</option><option>train</option><option>val</option><option>test</option></select></label>
  <label>labels (comma-separated, any of) <input id="labels"></label>
  <label>bbox min lon,min lat,max lon,max lat <input id="bbox" placeholder="-10,35,30,60"></label>
  <label>from <input id="from" type="date"></label>
  <label>to <input id="to" type="date"></label>
  <button type="submit">Search</button>
</form>
<div id="status" role="status"></div>
<div id="grid"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function filters() {
  const f = {};
  if ($("modality").value) f.modality = [$("modality").value];
  if ($("split").value) f.split = [$("split").value];
  const labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (labels.length) f.labels = labels;
  const box = $("bbox").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (box.length) {
    if (box.length !== 4 || box.some((v) => isNaN(Number(v)))) throw new Error("bbox needs four numbers");
    f.bbox = box.map(Number);
  }
  if ($("from").value) f.time_from = $("from").value;
  if ($("to").value) f.time_to = $("to").value + "T23:59:59";
  return f;
}

function show(results) {
  const grid = $("grid");
  grid.replaceChildren();
  for (const r of results) {
    const fig = document.createElement("figure");
    fig.tabIndex = 0;
    const img = document.createElement("img");
    img.src = r.thumbnail;
    img.alt = r.sample_id;
    img.loading = "lazy";
    const cap = document.createElement("figcaption");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = "#" + r.rank + "  " + r.score.toFixed(3) + "  ";
    cap.append(score, document.createTextNode(r.sample_id));
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = [
      "modality: " + r.modality + " (" + r.media + "), split: " + r.split,
      "labels: " + (r.labels.join(", ") || "-"),
      "location: " + (r.lat === null ? "-" : r.lat.toFixed(4) + ", " + r.lon.toFixed(4)),
      "time: " + (r.timestamp || "-"),
      "caption: " + (r.caption || "-"),
    ].join("\\n");
    fig.append(img, cap, meta);
    grid.append(fig);
  }
}

async function run(event) {
  event.preventDefault();
  const status = $("status");
  status.className = "";
  try {
    const k = Number($("k").value) || 24;
    const f = filters();
    const file = $("image").files[0];
    let response;
    status.textContent = "searching...";
    if (file) {
      const url = "/search/image?k=" + k + "&filters=" + encodeURIComponent(JSON.stringify(f));
      response = await fetch(url, {method: "POST", body: file, headers: {"Content-Type": "application/octet-stream"}});
    } else {
      const text = $("text").value.trim();
      if (!text) throw new Error("type a query or choose an image");
      response = await fetch("/search", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({text: text, k: k, filters: f})});
    }
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    show(body.results);
    status.textContent = body.results.length + " results in " + body.took_ms + " ms";
  } catch (err) {
    status.className = "error";
    status.textContent = String(err.message || err);
  }
}

$("query").addEventListener("submit", run);
</script>
</body>
</html>
"""

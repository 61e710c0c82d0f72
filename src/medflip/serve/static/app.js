// medflip serve: upload an image, show the JSON API's answers. Plain JS, no external code.
"use strict";
const $ = (id) => document.getElementById(id);
let currentFile = null;
let maxUploadMb = 32;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function post(url, file) {
  const response = await fetch(url, {
    method: "POST",
    body: file,
    headers: { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
  });
  let data;
  try {
    data = await response.json();
  } catch (e) {
    throw new Error(`server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(data.error || `server answered ${response.status}`);
  return data;
}

function bars(container, items, topName) {
  container.replaceChildren();
  for (const item of items) {
    const row = document.createElement("div");
    row.className = "row" + (item.name === topName ? " top" : "");
    row.dataset.name = item.name;
    const label = document.createElement("span");
    label.textContent = item.name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * item.probability).toFixed(1) + "%";
    track.appendChild(fill);
    const val = document.createElement("span");
    val.className = "val";
    val.textContent = item.probability.toFixed(2);
    row.append(label, track, val);
    container.appendChild(row);
  }
}

function showGrounding(g) {
  $("phrase").value = g.phrase;
  $("ground-caption").textContent =
    `"${g.phrase}": image-text similarity ${g.similarity.toFixed(3)}; map range ${g.range[0].toFixed(3)} to ${g.range[1].toFixed(3)}`;
  $("heatmap").src = g.heatmap_png;
}

function tooBig(file) {
  if (file.size > maxUploadMb * 1024 * 1024) {
    showError(`${file.name}: upload of ${(file.size / 1048576).toFixed(1)} MB is over the ${maxUploadMb} MB limit (--max-upload-mb)`);
    return true;
  }
  return false;
}

async function analyze(file) {
  showError("");
  if (tooBig(file)) return;
  $("busy").hidden = false;
  try {
    const data = await post("/api/analyze", file);
    currentFile = file;
    $("results").hidden = false;
    $("image").src = data.image.png;
    $("image-name").textContent = file.name;
    $("top-finding").textContent = data.top_finding;
    bars($("chexpert5"), data.chexpert5, data.top_finding);
    bars($("observations"), data.observations, null);
    const list = $("sentences");
    list.replaceChildren();
    for (const s of data.sentences) {
      const li = document.createElement("li");
      li.textContent = s.text + " ";
      const sim = document.createElement("span");
      sim.className = "sim";
      sim.textContent = `(${s.similarity.toFixed(3)})`;
      li.appendChild(sim);
      list.appendChild(li);
    }
    showGrounding(data.grounding);
  } catch (e) {
    showError(e.message.includes(file.name) ? e.message : `${file.name}: ${e.message}`);
  } finally {
    $("busy").hidden = true;
  }
}

async function groundPhrase(event) {
  event.preventDefault();
  if (!currentFile) return;
  showError("");
  $("busy").hidden = false;
  try {
    const phrase = encodeURIComponent($("phrase").value);
    showGrounding(await post(`/api/ground?phrase=${phrase}`, currentFile));
  } catch (e) {
    showError(e.message);
  } finally {
    $("busy").hidden = true;
  }
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) analyze(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) analyze(e.dataTransfer.files[0]);
});
$("ground-form").addEventListener("submit", groundPhrase);
fetch("/api/info").then((r) => r.json()).then((info) => {
  maxUploadMb = info.max_upload_mb;
  $("model-info").textContent = `model ${info.model} (sha256 ${info.sha256}), ${info.corpus_sentences} corpus sentences, uploads up to ${info.max_upload_mb} MB`;
});

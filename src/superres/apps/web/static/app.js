// superres web page: pick an image, send it to POST /api/upscale, compare before and after.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_SCALE = 4; // the API's default, chosen when the model offers it

const state = {
  models: [], // entries of GET /api/models
  limits: null, // GET /api/limits
  file: null, // the chosen input (a File)
  inputUrl: null, // object URLs, revoked when replaced
  resultUrl: null,
};

function showError(message) {
  $("error").textContent = message;
  $("error").title = message; // the line is cut to one row; the whole text is on hover
  $("error").hidden = !message;
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e6 ? 2 : 1)} MB`;
}

async function detailOf(body, status) {
  // The server refuses with {"detail": "one line"}; anything else gets a generic line.
  try {
    const parsed = JSON.parse(await body.text());
    if (typeof parsed.detail === "string") return parsed.detail;
  } catch {
    // not JSON: fall through
  }
  return `The server answered ${status}.`;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await detailOf(response, response.status));
  return response.json();
}

function replaceUrl(key, blob) {
  if (state[key]) URL.revokeObjectURL(state[key]);
  state[key] = blob ? URL.createObjectURL(blob) : null;
  return state[key];
}

// ------------------------------------------------------------------------- models and scales

function entriesOf(name) {
  return state.models.filter((entry) => entry.name === name).sort((a, b) => a.scale - b.scale);
}

// What the API's "auto" runs at the default scale: the model made for photos when offered.
function preferredName() {
  const real = state.models.find((entry) => entry.name === "real" && entry.scale === DEFAULT_SCALE);
  const fallback = state.models.find((entry) => entry.aliases.includes("default"));
  return (real || fallback || {}).name;
}

function fillModels() {
  const names = [...new Set(state.models.map((entry) => entry.name))];
  $("model").replaceChildren(
    ...names.map((name) => {
      const aliases = entriesOf(name)[0].aliases;
      return new Option(name === preferredName() ? `${name} (default)` : name, name);
    }),
  );
  const preferred = state.models.find((entry) => entry.name === preferredName());
  if (preferred) $("model").value = preferred.name;
  fillScales();
}

function fillScales() {
  const entries = entriesOf($("model").value);
  $("scale").replaceChildren(...entries.map((entry) => new Option(`×${entry.scale}`, entry.scale)));
  const scales = entries.map((entry) => entry.scale);
  if (scales.length) $("scale").value = scales.includes(DEFAULT_SCALE) ? DEFAULT_SCALE : scales.at(-1);
  describeModel();
}

function describeModel() {
  const entry = entriesOf($("model").value).find((e) => e.scale === Number($("scale").value));
  if (!entry) return;
  const facts = [`${entry.parameters.toLocaleString("en")} parameters`];
  if (entry.val_psnr_db != null) {
    facts.push(`${entry.val_psnr_db.toFixed(2)} dB PSNR on ${entry.val_dataset || "validation"}`);
  }
  if (entry.speed_mpx_per_s != null) {
    facts.push(`${entry.speed_mpx_per_s.toFixed(2)} megapixels/s measured here`);
  }
  $("model-info").textContent = `${entry.name} ×${entry.scale}: ${facts.join(" · ")}`;
  $("denoise-control").hidden = !entry.denoise;
}

// ------------------------------------------------------------------------------- the input

function setFile(file) {
  showError("");
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    const limit = megabytes(state.limits.max_upload_bytes);
    showError(`${file.name} is ${megabytes(file.size)}, over the limit of ${limit}.`);
    return false;
  }
  state.file = file;
  const preview = $("preview");
  preview.onload = () => {
    preview.hidden = false;
    $("file-info").textContent =
      `${file.name} · ${preview.naturalWidth}×${preview.naturalHeight} · ${megabytes(file.size)}`;
  };
  preview.onerror = () => {
    preview.hidden = true; // the server will say what is wrong with it, if anything
    $("file-info").textContent = `${file.name} · ${megabytes(file.size)} (no preview)`;
  };
  preview.src = replaceUrl("inputUrl", file);
  $("run").disabled = !state.models.length;
  return true;
}

// ---------------------------------------------------------------------------------- upscale

function setBusy(busy) {
  for (const id of ["run", "sample", "model", "scale", "format", "denoise", "ensemble"]) {
    $(id).disabled = busy;
  }
  if (!busy) $("run").disabled = !state.file || !state.models.length;
  $("progress").hidden = !busy;
}

function setProgress(text, percent) {
  // percent null: the server is working and cannot say how far it is.
  $("status").textContent = text;
  $("bar").classList.toggle("indeterminate", percent == null);
  $("bar").style.setProperty("--done", `${percent ?? 0}%`);
  if (percent == null) $("bar").removeAttribute("aria-valuenow");
  else $("bar").setAttribute("aria-valuenow", String(percent));
}

function upscale() {
  const file = state.file;
  if (!file) return;
  showError("");
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("model", $("model").value);
  form.append("scale", $("scale").value);
  form.append("format", $("format").value);
  if (!$("denoise-control").hidden) form.append("denoise", $("denoise").value);
  if ($("ensemble").value !== "1") form.append("ensemble", $("ensemble").value);

  const request = new XMLHttpRequest();
  request.open("POST", "/api/upscale");
  request.responseType = "blob";
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      const percent = Math.round((100 * event.loaded) / event.total);
      setProgress(`Uploading… ${percent}%`, percent);
    }
  };
  request.upload.onload = () => setProgress("Upscaling…", null);
  request.onload = async () => {
    setBusy(false);
    if (request.status === 200) {
      showResult(request, performance.now() - started);
    } else {
      showError(await detailOf(request.response, request.status));
    }
  };
  request.onerror = () => {
    setBusy(false);
    showError("The connection failed before the server answered; is it still running?");
  };
  setBusy(true);
  setProgress("Uploading…", 0);
  const started = performance.now();
  request.send(form);
}

function showResult(request, totalMs) {
  const format = $("format").value;
  const model = request.getResponseHeader("X-Model");
  const stem = state.file.name.replace(/\.[^.]*$/, "") || "image";
  const url = replaceUrl("resultUrl", request.response);
  $("after").onerror = () => showError(`This browser cannot show ${format}; Download has it.`);
  $("after").src = url;
  $("before").src = state.inputUrl;
  $("input-thumb").src = state.inputUrl;
  $("input-size").textContent = request.getResponseHeader("X-Input-Size").replace("x", " × ");
  $("output-size").textContent = request.getResponseHeader("X-Output-Size").replace("x", " × ");
  $("used-model").textContent = model.replace(/-x(\d+)$/, " ×$1");
  const workMs = Number(request.getResponseHeader("X-Elapsed-Ms"));
  $("elapsed").textContent = `${(workMs / 1000).toFixed(2)} s work, ${(totalMs / 1000).toFixed(2)} s total`;
  $("download").href = url;
  $("download").download = `${stem}-${model.replace(/^.*-/, "")}.${format}`;
  $("result").hidden = false;
  refreshModels(); // the model list now carries a measured speed
}

// ------------------------------------------------------------------------------------ wiring

async function refreshModels() {
  state.models = await getJSON("/api/models");
  describeModel();
}

async function trySample() {
  showError("");
  try {
    const response = await fetch("/api/sample.png");
    if (!response.ok) throw new Error(await detailOf(response, response.status));
    const sample = new File([await response.blob()], "astronaut.png", { type: "image/png" });
    if (setFile(sample)) upscale();
  } catch (error) {
    showError(error.message);
  }
}

function wire() {
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) setFile(file);
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) setFile(file);
  });
  $("model").addEventListener("change", fillScales);
  $("scale").addEventListener("change", describeModel);
  $("denoise").addEventListener("input", () => {
    $("denoise-value").textContent = Number($("denoise").value).toFixed(2);
  });
  $("run").addEventListener("click", upscale);
  $("sample").addEventListener("click", trySample);
  $("slider").addEventListener("input", () => {
    $("compare").style.setProperty("--pos", `${$("slider").value}%`);
  });
}

async function start() {
  wire();
  try {
    [state.models, state.limits] = await Promise.all([getJSON("/api/models"), getJSON("/api/limits")]);
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
    return;
  }
  $("file-info").textContent =
    `PNG, JPEG, WebP, BMP or TIFF, up to ${megabytes(state.limits.max_upload_bytes)}`;
  if (!state.models.length) {
    showError("No models are installed on this server, so nothing can be upscaled yet.");
    $("sample").disabled = true;
    return;
  }
  fillModels();
}

start();

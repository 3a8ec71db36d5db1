// rnnserve try-it page. Plain modern JavaScript, no dependencies, no build step.
// Every call goes to this service's own JSON API (relative URLs, so a path prefix works too).
"use strict";

(() => {
  const API_BASE = new URL("../", window.location.href);
  const KEY_STORAGE = "rnnserve.apiKey";
  const STATUS_REFRESH_MS = 3000;
  const BACKGROUND_REFRESH_MS = 15000;

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /** Creates an element: el("td", {className: "num", title: "x"}, "text", child). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node && !key.includes("-")) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const percent = (p) => `${(100 * p).toFixed(1)} %`;
  const ms = (t) => (t < 1000 ? `${Math.round(t)} ms` : `${(t / 1000).toFixed(2)} s`);

  // ---------------------------------------------------------------------------------------------- API key
  const keyInput = $("#api-key");
  function apiKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return keyInput.value.trim();
    }
  }
  function storeKey(value) {
    try {
      if (value) window.sessionStorage.setItem(KEY_STORAGE, value);
      else window.sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      /* storage disabled: the field's value is used directly */
    }
  }
  keyInput.value = apiKey();
  keyInput.addEventListener("input", () => {
    storeKey(keyInput.value.trim());
    clearError(keyInput);
  });
  keyInput.addEventListener("change", () => refreshAll());
  $("#api-key-clear").addEventListener("click", () => {
    keyInput.value = "";
    storeKey("");
    clearError(keyInput);
    keyInput.focus();
  });
  $("#key-form").addEventListener("submit", (event) => event.preventDefault());

  // ---------------------------------------------------------------------------------------------- HTTP
  class ApiError extends Error {
    constructor({ status = 0, code = "error", message = "request failed", field = null, limit = null,
      retryAfter = null, requestId = null }) {
      super(message);
      Object.assign(this, { status, code, field, limit, retryAfter, requestId });
    }

    static async from(response) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        /* not JSON (a proxy's error page): described by the status line below */
      }
      const detail = (body && typeof body.error === "object" && body.error) || {};
      let field = detail.field ?? null;
      if (!field && (response.status === 401 || response.status === 403)) field = "api_key";
      const message = detail.message
        || (typeof body?.detail === "string" && body.detail)
        || `${response.status} ${response.statusText || "error"}`;
      return new ApiError({
        status: response.status,
        code: detail.code || `http_${response.status}`,
        message,
        field,
        limit: detail.limit ?? null,
        retryAfter: response.headers.get("Retry-After"),
        requestId: body?.request_id || response.headers.get("X-Request-ID"),
      });
    }
  }

  /** fetch() against the API with the key header; network failures become ApiError (status 0). */
  async function request(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
    const headers = { Accept: accept };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method, headers, signal, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    try {
      return await window.fetch(new URL(path, API_BASE), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError({ code: "network_error", message: `cannot reach the service (${error.message})` });
    }
  }

  /** JSON in, JSON out; a non-2xx answer throws ApiError (unless its status is in `accept`). */
  async function callJson(path, options = {}, acceptStatuses = []) {
    const started = performance.now();
    const response = await request(path, options);
    if (!response.ok && !acceptStatuses.includes(response.status)) throw await ApiError.from(response);
    const data = await response.json();
    return { data, response, elapsed: performance.now() - started };
  }

  // ---------------------------------------------------------------------------------------------- errors
  /** The control whose data-fields names the API field ("texts[2]" -> "texts"), else null. */
  function controlFor(form, field) {
    if (!field) return null;
    const name = String(field).replace(/\[\d+\].*$/, "").replace(/\..*$/, "").toLowerCase();
    if (name === "api_key" || name === "authorization") return keyInput;
    if (!form) return null;
    return $$("[data-fields]", form).find((c) => c.dataset.fields.split(/\s+/).includes(name)) || null;
  }

  function errorSlot(control) {
    return control ? document.getElementById(`${control.id}-error`) : null;
  }

  function clearError(control) {
    const slot = errorSlot(control);
    if (slot) {
      slot.hidden = true;
      slot.textContent = "";
      slot.removeAttribute("title");
    }
    control?.removeAttribute("aria-invalid");
  }

  function clearErrors(form) {
    for (const control of $$("[data-fields], button[type=submit]", form)) clearError(control);
  }

  /** Shows an error next to the control it concerns: the field's control, else the submit button. */
  function showError(form, error, extra = "") {
    if (error?.name === "AbortError") return;
    const apiError = error instanceof ApiError
      ? error
      : new ApiError({ code: "client_error", message: String(error?.message || error) });
    let control = controlFor(form, apiError.field);
    if (!control && ["model_unavailable", "model_not_found"].includes(apiError.code)) {
      control = controlFor(form, "model");
    }
    // Without a form (the status refresh), errors go next to the Status tab's refresh button.
    const target = control || (form ? $("button[type=submit]", form) : $("#status-refresh"));
    const slot = errorSlot(target);
    if (!slot) {
      window.alert(apiError.message); // never a silent failure
      return;
    }
    let text = apiError.message + extra;
    if (apiError.limit !== null && apiError.limit !== undefined && !apiError.message.includes(String(apiError.limit))) {
      text += ` (limit ${apiError.limit})`;
    }
    if (!/[.!?]$/.test(text)) text += ".";
    const parts = [text];
    if (apiError.retryAfter) parts.push(`Retry after ${apiError.retryAfter} s.`);
    slot.replaceChildren(
      el("span", { className: "message" }, parts.join(" ")),
      " ",
      el("span", { className: "code" }, apiError.status ? `${apiError.status} ${apiError.code}` : apiError.code),
    );
    slot.dataset.code = apiError.code;
    slot.dataset.status = String(apiError.status);
    if (apiError.requestId) slot.title = `request id ${apiError.requestId}`;
    slot.hidden = false;
    if (control) control.setAttribute("aria-invalid", "true");
  }

  for (const control of $$("[data-fields]")) {
    control.addEventListener("input", () => clearError(control));
  }

  // ---------------------------------------------------------------------------------------------- forms
  /** Reads a number control: "" -> undefined (the API default); int controls send integers as typed. */
  function numberValue(input) {
    const raw = input.value.trim();
    if (raw === "") return undefined;
    const value = Number(raw);
    return Number.isNaN(value) ? raw : value; // the API names the field if it is not a number
  }

  function setBusy(form, busy) {
    const button = $("button[type=submit]", form);
    button.disabled = busy;
    button.classList.toggle("busy", busy);
    form.setAttribute("aria-busy", String(busy));
  }

  /** Ctrl/Cmd+Enter in a text area submits its form. */
  for (const area of $$("textarea")) {
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        area.form?.requestSubmit();
      }
    });
  }

  function onSubmit(form, handler) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      setBusy(form, true);
      try {
        await handler();
      } catch (error) {
        showError(form, error);
      } finally {
        setBusy(form, false);
      }
    });
  }

  function selectedModel(task) {
    const value = $(`.model-picker[data-task="${task}"]`).value;
    return value || undefined;
  }

  // ---------------------------------------------------------------------------------------------- sentiment
  const SENTIMENT_COLOURS = { negative: "#d1495b", positive: "#2f9e66", neutral: "#8d99ae" };
  const PALETTE = ["#4e79a7", "#f28e2b", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#59a14f"];

  const sentimentForm = $("#sentiment-form");
  onSubmit(sentimentForm, async () => {
    const lines = $("#sentiment-texts").value.split("\n");
    const texts = [];
    const lineOf = [];
    lines.forEach((line, i) => {
      if (line.trim() !== "") {
        texts.push(line);
        lineOf.push(i + 1);
      }
    });
    const results = $("#sentiment-results");
    if (texts.length === 0) {
      results.replaceChildren();
      showError(sentimentForm, new ApiError({ code: "empty", message: "Enter at least one line of text.", field: "texts" }));
      return;
    }
    let answer;
    try {
      answer = await callJson("sentiment", { method: "POST", body: { texts, model: selectedModel("sentiment") } });
    } catch (error) {
      results.replaceChildren();
      const index = /^texts\[(\d+)\]/.exec(error.field || "");
      showError(sentimentForm, error, index ? ` (line ${lineOf[Number(index[1])]})` : "");
      return;
    }
    const { data, elapsed } = answer;
    $("#sentiment-meta").textContent = `${data.model} · ${texts.length} text${texts.length > 1 ? "s" : ""} · ${ms(elapsed)}`;
    results.replaceChildren(...data.results.map((result, i) => sentimentRow(texts[i], result)));
  });

  function sentimentRow(text, result) {
    const labels = Object.keys(result.scores).sort();
    const bar = el("div", {
      className: "prob-bar",
      role: "img",
      "aria-label": labels.map((l) => `${l} ${percent(result.scores[l])}`).join(", "),
    });
    const legend = el("p", { className: "prob-labels" });
    labels.forEach((label, i) => {
      const colour = SENTIMENT_COLOURS[label] || PALETTE[i % PALETTE.length];
      const segment = el("span", { className: "prob-seg", title: `${label}: ${percent(result.scores[label])}` });
      segment.dataset.label = label;
      segment.style.setProperty("--seg", colour);
      segment.style.width = `${100 * result.scores[label]}%`;
      bar.append(segment);
      const swatch = el("span", { className: "swatch" });
      swatch.style.setProperty("--seg", colour);
      legend.append(el("span", { className: label === result.label ? "top-label" : "" },
        swatch, `${label} ${percent(result.scores[label])}`));
    });
    const row = el("li", { className: "sentiment-row" }, el("p", { className: "sentiment-text" }, text), bar, legend);
    row.dataset.label = result.label;
    row.dataset.score = String(result.score);
    return row;
  }

  // ---------------------------------------------------------------------------------------------- NER
  const ENTITY_TYPES = {
    PER: { colour: "#aa9cfc", name: "person" },
    LOC: { colour: "#ff9561", name: "location" },
    ORG: { colour: "#7aecec", name: "organisation" },
    MISC: { colour: "#e4e7d2", name: "miscellaneous" },
  };
  const extraEntityColours = new Map();
  function entityColour(label) {
    if (ENTITY_TYPES[label]) return ENTITY_TYPES[label].colour;
    if (!extraEntityColours.has(label)) extraEntityColours.set(label, PALETTE[extraEntityColours.size % PALETTE.length]);
    return extraEntityColours.get(label);
  }

  const nerForm = $("#ner-form");
  onSubmit(nerForm, async () => {
    const text = $("#ner-text").value;
    const { data, elapsed } = await callJson("tag", { method: "POST", body: { text, model: selectedModel("ner") } });
    const [result] = data.results;
    renderEntities(text, result);
    $("#ner-meta").textContent = `${data.model} · ${result.entities.length} entit${result.entities.length === 1 ? "y" : "ies"} · ${ms(elapsed)}`;
  });

  /** Highlights entities inline. The API's offsets count code points, so slice code points, not UTF-16. */
  function renderEntities(text, result) {
    const chars = Array.from(text);
    const slice = (start, end) => chars.slice(start, end).join("");
    const output = $("#ner-output");
    const nodes = [];
    let position = 0;
    const entities = [...result.entities].sort((a, b) => a.start - b.start);
    for (const entity of entities) {
      if (entity.start < position) continue; // overlapping spans cannot be drawn inline
      nodes.push(slice(position, entity.start));
      const scoreText = typeof entity.score === "number" ? `, score ${entity.score.toFixed(3)}` : "";
      const mark = el("mark", { className: "ent", title: `${entity.label}${ENTITY_TYPES[entity.label] ? ` (${ENTITY_TYPES[entity.label].name})` : ""}${scoreText}` },
        el("span", { className: "ent-text" }, slice(entity.start, entity.end)),
        el("span", { className: "ent-label" }, entity.label));
      mark.dataset.label = entity.label;
      mark.dataset.start = String(entity.start);
      mark.dataset.end = String(entity.end);
      if (typeof entity.score === "number") mark.dataset.score = String(entity.score);
      mark.style.setProperty("--ent", entityColour(entity.label));
      nodes.push(mark);
      position = entity.end;
    }
    nodes.push(slice(position));
    output.replaceChildren(...nodes);
    output.hidden = false;

    const counts = new Map();
    for (const entity of entities) counts.set(entity.label, (counts.get(entity.label) || 0) + 1);
    const labels = [...new Set([...Object.keys(ENTITY_TYPES), ...counts.keys()])];
    const legend = $("#ner-legend");
    legend.replaceChildren(...labels.map((label) => {
      const chip = el("span", { className: "ent-label" }, label);
      chip.style.setProperty("--ent", entityColour(label));
      const item = el("li", {}, chip, `${ENTITY_TYPES[label]?.name || label} · ${counts.get(label) || 0}`);
      item.dataset.label = label;
      return item;
    }));
    legend.hidden = false;

    const rows = result.tokens.map((token, i) => {
      const type = token.tag.replace(/^[BIES]-/, "");
      const chip = el("span", { className: "tag-chip" }, token.tag);
      if (token.tag !== "O") chip.style.setProperty("--ent", entityColour(type));
      return el("tr", {}, el("td", { className: "num" }, i + 1), el("td", {}, token.text),
        el("td", { className: "num" }, `${token.start}–${token.end}`), el("td", { className: "tag" }, chip));
    });
    $("#ner-token-table tbody").replaceChildren(...rows);
    $("#ner-tokens").hidden = false;
  }

  // ---------------------------------------------------------------------------------------------- translation
  const translationForm = $("#translation-form");
  onSubmit(translationForm, async () => {
    const withAttention = $("#translation-return-attention").checked;
    const body = {
      text: $("#translation-text").value,
      model: selectedModel("translation"),
      beam_size: numberValue($("#translation-beam")),
      max_length: numberValue($("#translation-max-length")),
      length_penalty: numberValue($("#translation-length-penalty")),
      return_attention: withAttention,
    };
    const { data, elapsed } = await callJson("translate", { method: "POST", body });
    const [result] = data.results;
    $("#translation-result").textContent = result.translation;
    $("#translation-score").textContent =
      `score ${result.score.toFixed(3)} (length-normalised log-probability)`;
    $("#translation-output").hidden = false;
    $("#translation-meta").textContent = `${data.model} · ${ms(elapsed)}`;
    const figure = $("#translation-heatmap");
    if (withAttention && result.attention) {
      renderHeatmap(result.source_tokens, result.target_tokens, result.attention);
      figure.hidden = false;
    } else {
      figure.hidden = true;
    }
  });

  /** attention[t][s]: one row per target subword, one column per source subword. */
  function renderHeatmap(sourceTokens, targetTokens, attention) {
    const table = $("#translation-attention");
    const head = el("tr", {}, el("th", { scope: "col" }, el("span", { className: "sr-only" }, "target \\ source")));
    for (const token of sourceTokens) head.append(el("th", { scope: "col", title: token }, el("span", {}, token)));
    const rows = attention.map((weights, t) => {
      const row = el("tr", {}, el("th", { scope: "row", title: targetTokens[t] }, targetTokens[t]));
      weights.forEach((weight, s) => {
        const shown = weight >= 0.1 ? weight.toFixed(2).replace(/^0/, "") : "";
        const cell = el("td", { title: `${targetTokens[t]} ← ${sourceTokens[s]}: ${weight.toFixed(3)}` },
          shown || el("span", { className: "sr-only" }, weight.toFixed(2)));
        cell.style.setProperty("--w", String(Math.sqrt(Math.max(0, Math.min(1, weight)))));
        if (weight >= 0.45) cell.classList.add("dark");
        row.append(cell);
      });
      return row;
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  }

  // ---------------------------------------------------------------------------------------------- generation
  const generationForm = $("#generation-form");
  const stopButton = $("#generation-stop");
  const genText = $("#generation-text");
  const genOutput = $("#generation-output");
  let generation = null; // {controller}

  function setGenerationState(state, label = state) {
    const node = $("#generation-state");
    node.dataset.state = state;
    node.textContent = label;
    genOutput.classList.toggle("streaming", state === "streaming" || state === "waiting");
  }

  function generationBody() {
    const seedRaw = $("#generation-seed").value.trim();
    const body = {
      prompt: $("#generation-prompt").value,
      model: selectedModel("generation"),
      temperature: numberValue($("#generation-temperature")),
      top_k: numberValue($("#generation-top-k")),
      top_p: numberValue($("#generation-top-p")),
      max_new_tokens: numberValue($("#generation-max-tokens")),
      seed: numberValue($("#generation-seed")),
      stream: true,
    };
    let json = JSON.stringify(body);
    // Seeds go up to 2**63 - 1, beyond JavaScript's exact integers: send the digits as typed.
    if (/^\d+$/.test(seedRaw) && !Number.isSafeInteger(Number(seedRaw))) {
      json = json.replace(/"seed":[^,}]+/, `"seed":${seedRaw}`);
    }
    return json;
  }

  generationForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (generation) return;
    clearErrors(generationForm);
    const controller = new AbortController();
    generation = { controller };
    const submit = $("#generation-submit");
    submit.disabled = true;
    stopButton.disabled = false;
    genText.textContent = "";
    $("#generation-prompt-echo").textContent = $("#generation-prompt").value;
    $("#generation-ttfc").textContent = "–";
    $("#generation-rate").textContent = "–";
    $("#generation-count").textContent = "0";
    setGenerationState("waiting", "waiting…");
    const started = performance.now();
    let firstAt = null;
    let characters = 0;
    let scheduled = false;
    const updateStats = () => {
      scheduled = false;
      $("#generation-count").textContent = String(characters);
      if (firstAt !== null) {
        const seconds = (performance.now() - firstAt) / 1000;
        if (seconds > 0.05 && characters > 1) $("#generation-rate").textContent = ((characters - 1) / seconds).toFixed(0);
      }
    };
    try {
      const response = await request("generate", {
        method: "POST", body: generationBody(), signal: controller.signal, accept: "text/event-stream",
      });
      if (!response.ok) throw await ApiError.from(response);
      setGenerationState("streaming", "streaming…");
      let finish = null;
      for await (const event of serverSentEvents(response, controller.signal)) {
        if (event.error) {
          throw new ApiError({ code: event.error_type || "stream_error", message: event.error });
        }
        if (event.text) {
          if (firstAt === null) {
            firstAt = performance.now();
            $("#generation-ttfc").textContent = ms(firstAt - started);
          }
          genText.append(event.text); // a text node per chunk: appended as it arrives
          characters += typeof event.tokens === "number" ? event.tokens : Array.from(event.text).length;
          genOutput.scrollTop = genOutput.scrollHeight;
          if (!scheduled) {
            scheduled = true;
            requestAnimationFrame(updateStats);
          }
        }
        if (event.finish_reason) {
          finish = event;
          break;
        }
      }
      if (finish && typeof finish.generated_text === "string" && finish.generated_text !== genText.textContent) {
        genText.textContent = finish.generated_text; // the final event carries the whole text
      }
      updateStats();
      setGenerationState("finished", finish ? `finished: ${finish.finish_reason === "stop" ? "stop sequence" : "length"}` : "finished");
    } catch (error) {
      updateStats();
      if (error.name === "AbortError") {
        setGenerationState("stopped", `stopped after ${characters} characters`);
      } else {
        setGenerationState("error", "error");
        showError(generationForm, error);
      }
    } finally {
      generation = null;
      submit.disabled = false;
      stopButton.disabled = true;
    }
  });

  stopButton.addEventListener("click", () => generation?.controller.abort());
  $("#panel-generation").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && generation) generation.controller.abort();
  });

  /** Yields the JSON of each `data:` event of a text/event-stream response body. */
  async function* serverSentEvents(response, signal) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const onAbort = () => reader.cancel().catch(() => {});
    signal.addEventListener("abort", onAbort);
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (signal.aborted) throw new DOMException("stopped", "AbortError");
        if (done) break;
        buffer += value;
        let boundary;
        while ((boundary = /\r?\n\r?\n/.exec(buffer)) !== null) {
          const block = buffer.slice(0, boundary.index);
          buffer = buffer.slice(boundary.index + boundary[0].length);
          const data = block.split(/\r?\n/)
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (data) yield JSON.parse(data);
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      reader.releaseLock?.();
    }
  }

  // ---------------------------------------------------------------------------------------------- status
  let lastModels = [];

  function fillPickers(models) {
    for (const picker of $$(".model-picker")) {
      const task = picker.dataset.task;
      const mine = models.filter((m) => m.task === task).sort((a, b) => (b.default - a.default) || a.name.localeCompare(b.name));
      const previous = picker.dataset.touched ? picker.value : "";
      const signature = mine.map((m) => `${m.name}:${m.state}:${m.default}`).join("|");
      if (picker.dataset.signature === signature) continue;
      picker.dataset.signature = signature;
      picker.replaceChildren(...mine.map((m) => {
        const notes = [m.default ? "default" : "", m.state !== "ready" ? m.state : ""].filter(Boolean).join(", ");
        // a model that cannot answer (failed, or unloaded by model control) is listed but not offered
        const unusable = ["failed", "unloading", "unloaded"].includes(m.state);
        return el("option", { value: m.name, disabled: unusable }, notes ? `${m.name} (${notes})` : m.name);
      }));
      if (mine.length === 0) picker.append(el("option", { value: "" }, "no model for this task"));
      const fallback = mine.find((m) => m.default) || mine[0];
      picker.value = mine.some((m) => m.name === previous) ? previous : fallback?.name || "";
    }
  }
  for (const picker of $$(".model-picker")) {
    picker.addEventListener("change", () => {
      picker.dataset.touched = "1";
    });
  }

  function renderReady(ready, unreachable) {
    for (const badge of [$("#ready-badge"), $("#status-ready")]) {
      badge.classList.remove("badge-unknown", "badge-ok", "badge-warn", "badge-bad");
      if (unreachable) {
        badge.classList.add("badge-bad");
        badge.textContent = "unreachable";
      } else if (ready.ready) {
        badge.classList.add("badge-ok");
        badge.textContent = "ready";
      } else {
        badge.classList.add("badge-warn");
        badge.textContent = "not ready";
      }
      badge.dataset.ready = unreachable ? "unreachable" : String(Boolean(ready?.ready));
    }
    const reasons = $("#status-reasons");
    const entries = Object.entries(ready?.reasons || {});
    reasons.replaceChildren(...entries.map(([task, why]) => el("li", {}, `${task}: ${why}`)));
    reasons.hidden = entries.length === 0;
  }

  function renderModels(models) {
    const rows = models.map((m) => {
      const state = el("td", { className: `state-${m.state}` }, m.state);
      if (m.error) state.append(el("span", { className: "model-error" }, m.error));
      const row = el("tr", {},
        el("th", { scope: "row" }, m.name),
        el("td", {}, m.task),
        state,
        el("td", {}, m.default ? "★ default" : ""),
        el("td", { className: "num" }, m.version ?? "–"),
        el("td", {}, m.provider ?? "–"),
        el("td", { className: "num" }, m.queue_depth ?? 0),
        el("td", { className: "num" }, m.in_flight ?? 0));
      row.dataset.model = m.name;
      return row;
    });
    $("#status-models tbody").replaceChildren(...rows);
  }

  let refreshing = null;
  async function refreshAll() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [ready, models] = await Promise.all([
          callJson("ready", {}, [503]),
          callJson("models"),
        ]);
        lastModels = models.data.models;
        renderReady(ready.data, false);
        fillPickers(lastModels);
        renderModels(lastModels);
        $("#status-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
        clearError($("#status-refresh"));
        if (keyInput.dataset.fromRefresh) {
          clearError(keyInput);
          delete keyInput.dataset.fromRefresh;
        }
      } catch (error) {
        if (error instanceof ApiError && error.status === 0) renderReady(null, true);
        if (controlFor(null, error.field) === keyInput) keyInput.dataset.fromRefresh = "1";
        showError(null, error);
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }
  $("#status-refresh").addEventListener("click", () => refreshAll());

  function schedule() {
    const statusOpen = !$("#panel-status").hidden;
    const delay = statusOpen ? STATUS_REFRESH_MS : BACKGROUND_REFRESH_MS;
    window.setTimeout(async () => {
      if (!document.hidden) await refreshAll();
      schedule();
    }, delay);
  }

  // ---------------------------------------------------------------------------------------------- tabs
  const tabs = $$('[role="tab"]');
  function selectTab(tab, { focus = false, updateHash = true } = {}) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    const name = tab.id.replace(/^tab-/, "");
    if (updateHash && window.location.hash !== `#${name}`) window.history.replaceState(null, "", `#${name}`);
    if (name === "status") refreshAll();
  }
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      selectTab(tabs[(moves[event.key] + tabs.length) % tabs.length], { focus: true });
    });
  });
  function tabFromHash() {
    return document.getElementById(`tab-${window.location.hash.slice(1)}`);
  }
  window.addEventListener("hashchange", () => {
    const tab = tabFromHash();
    if (tab) selectTab(tab, { updateHash: false });
  });

  // ---------------------------------------------------------------------------------------------- start
  selectTab(tabFromHash() || tabs[0], { updateHash: false });
  refreshAll().finally(() => {
    document.body.dataset.loaded = "true";
  });
  schedule();
})();

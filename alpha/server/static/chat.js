// /chat: a streaming chat with a served model through /v1/chat/completions (OpenAI's SSE shape).
"use strict";
(async function () {
  A.header("/chat");
  const main = A.$("#main");
  const saved = JSON.parse(localStorage.getItem("alpha-chat") || "{}");
  const model = A.el("select", { id: "model" });
  const num = (id, value, attrs) => {
    const i = A.el("input", Object.assign({ type: "number", id, step: "any" }, attrs || {}));
    i.value = saved[id] !== undefined ? saved[id] : value;
    return i;
  };
  const temperature = num("temperature", 0.8, { min: 0, max: 2 });
  const topP = num("top_p", 1, { min: 0, max: 1 });
  const topK = num("top_k", 0, { min: 0 });
  const maxTokens = num("max_tokens", 200, { min: 1 });
  const seed = num("seed", "", {});
  const key = A.el("input", { type: "password", id: "api-key", placeholder: "API key (if the server asks)" });
  key.value = sessionStorage.getItem("alpha-api-key") || "";
  const log = A.el("div", { class: "chat-log", id: "chat-log" });
  const input = A.el("textarea", { id: "prompt", placeholder: "Say something… (Enter sends, Shift+Enter: new line)" });
  const send = A.el("button", { class: "primary", id: "send", type: "submit" }, "Send");
  const stop = A.el("button", { type: "button", id: "stop", disabled: true }, "Stop");
  const clear = A.el("button", { type: "button" }, "Clear");
  const form = A.el("form", { class: "chat-form" }, input, send, stop);
  const label = (text, node) => A.el("label", {}, text, node);
  main.replaceChildren(A.el("div", { class: "row" }, A.el("h1", {}, "Chat"), A.el("span", { class: "spacer" }), clear),
    A.el("div", { class: "panel settings" }, label("model", model), label("temperature", temperature),
      label("top p", topP), label("top k (0 = off)", topK), label("max tokens", maxTokens),
      label("seed (optional)", seed), label("API key", key)),
    A.el("div", { class: "panel" }, log, form));

  const messages = [];
  let controller = null;
  const headers = () => {
    const h = { "Content-Type": "application/json" };
    if (key.value) h.Authorization = `Bearer ${key.value}`;
    return h;
  };
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const data = await r.json();
    for (const m of data.data || []) model.append(A.el("option", { value: m.id }, m.id));
    if (saved.model) model.value = saved.model;
    if (!model.options.length) model.append(A.el("option", { value: "" }, "no models (train one first)"));
  } catch (e) {
    model.append(A.el("option", { value: "" }, "models unavailable"));
  }

  function bubble(role, text) {
    const b = A.el("div", { class: `msg ${role}` }, text);
    log.append(b);
    b.scrollIntoView({ block: "end" });
    return b;
  }

  async function ask(text) {
    messages.push({ role: "user", content: text });
    bubble("user", text);
    const out = bubble("assistant", "");
    const settings = { model: model.value, temperature: Number(temperature.value), top_p: Number(topP.value),
      top_k: Number(topK.value), max_tokens: Number(maxTokens.value), seed: seed.value };
    localStorage.setItem("alpha-chat", JSON.stringify(settings));
    sessionStorage.setItem("alpha-api-key", key.value);
    const body = { model: settings.model, messages, stream: true, temperature: settings.temperature,
      top_p: settings.top_p, max_tokens: settings.max_tokens };
    if (settings.top_k > 0) body.top_k = settings.top_k;
    if (seed.value !== "") body.seed = Number(seed.value);
    controller = new AbortController();
    send.disabled = true; stop.disabled = false;
    let reply = "";
    try {
      const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { msg = (await r.json()).error.message; } catch (e) { /* keep the status */ }
        throw new Error(msg);
      }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          for (const line of frame.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            let chunk;
            try { chunk = JSON.parse(data); } catch (e) { continue; }
            if (chunk.error) throw new Error(chunk.error.message || "error");
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              reply += delta.content;
              out.textContent = reply;
            }
          }
        }
      }
      messages.push({ role: "assistant", content: reply });
      out.setAttribute("data-done", "1");
    } catch (e) {
      if (e.name === "AbortError") { messages.push({ role: "assistant", content: reply }); out.setAttribute("data-done", "1"); }
      else { out.remove(); messages.pop(); bubble("error", e.message); }
    } finally {
      send.disabled = false; stop.disabled = true; controller = null;
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clear.addEventListener("click", () => { messages.length = 0; log.replaceChildren(); });
})();

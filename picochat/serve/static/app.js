// picochat web UI: conversations in localStorage, answers streamed from /v1/chat/completions.
"use strict";

const KEY = "picochat.v1";
const DEFAULTS = {system: "", temperature: 0.8, top_p: 0.95, max_tokens: 200, seed: "", api_key: ""};
const $ = (id) => document.getElementById(id);

let state = load();
let controller = null;       // AbortController of the answer being streamed

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || "null");
    if (s && Array.isArray(s.conversations)) return {settings: {...DEFAULTS, ...s.settings}, conversations: s.conversations, current: s.current};
  } catch (e) { /* a corrupt store starts fresh */ }
  return {settings: {...DEFAULTS}, conversations: [], current: null};
}
function save() {
  try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { setStatus("could not save: " + e.message); }
}
function current() {
  let c = state.conversations.find((c) => c.id === state.current);
  if (!c) { c = newConversation(); }
  return c;
}
function newConversation() {
  const c = {id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New chat", messages: []};
  state.conversations.unshift(c);
  state.current = c.id;
  save();
  return c;
}
function setStatus(text) { $("status").textContent = text || ""; }

// --- rendering -------------------------------------------------------------------------------
function renderList() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of state.conversations) {
    const li = document.createElement("li");
    li.className = c.id === state.current ? "active" : "";
    const span = document.createElement("span");
    span.textContent = c.title;
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = "Delete this conversation";
    del.onclick = (e) => { e.stopPropagation(); deleteConversation(c.id); };
    li.onclick = () => { if (controller) return; state.current = c.id; save(); renderAll(); };
    li.append(span, del);
    ul.append(li);
  }
}

function details(summary, text, open) {
  const d = document.createElement("details");
  if (open) d.open = true;
  const s = document.createElement("summary");
  s.textContent = summary;
  const pre = document.createElement("pre");
  pre.textContent = text;
  d.append(s, pre);
  return d;
}

function renderMessage(m, index, conv) {
  const div = document.createElement("div");
  div.className = "msg " + m.role + (m.streaming ? " streaming" : "");
  div.dataset.index = index;
  const role = document.createElement("div");
  role.className = "role";
  role.textContent = m.role === "user" ? "You" : "picochat";
  div.append(role);
  if (m.thinking) div.append(details("Thinking", m.thinking, m.streaming && !m.content));
  for (const t of m.tools || []) {
    div.append(details(`Tool: ${t.name || "?"}(${JSON.stringify(t.arguments ?? {})}) → ${String(t.result).slice(0, 40)}`,
                       `call: ${t.name}\narguments: ${JSON.stringify(t.arguments, null, 2)}\nresult: ${t.result}`, false));
  }
  for (const t of m.tool_calls || []) {
    div.append(details(`Function call: ${t.function.name}`, t.function.arguments, false));
  }
  const body = document.createElement("div");
  body.className = "body";
  if (m.role === "assistant") body.innerHTML = renderMarkdown(m.content);   // renderMarkdown escapes everything
  else { const p = document.createElement("p"); p.style.whiteSpace = "pre-wrap"; p.textContent = m.content; body.append(p); }
  div.append(body);
  for (const n of m.notices || []) {
    const el = document.createElement("div"); el.className = "notice"; el.textContent = "note: " + n; div.append(el);
  }
  if (m.error) { const el = document.createElement("div"); el.className = "error"; el.textContent = m.error; div.append(el); }
  if (!m.streaming) {
    const actions = document.createElement("div");
    actions.className = "actions";
    if (m.role === "user") actions.append(button("Edit", () => startEdit(div, conv, index)));
    if (m.role === "assistant" && index === conv.messages.length - 1) actions.append(button("Regenerate", () => regenerate(conv)));
    actions.append(button("Copy", () => navigator.clipboard && navigator.clipboard.writeText(m.content)));
    if (m.role === "assistant" && !m.error) {
      const up = button(m.rated === "up" ? "👍 sent" : "👍", () => rate(conv, index, "up"));
      const down = button(m.rated === "down" ? "👎 sent" : "👎", () => rate(conv, index, "down"));
      up.className = "rate-up"; down.className = "rate-down";
      actions.append(up, down);
    }
    div.append(actions);
    if (m.role === "assistant" && m.previous !== undefined && m.previous !== m.content && !m.compared) {
      // after a regenerate: which of the two answers was better? (a comparison for RLHF)
      const ask = document.createElement("div");
      ask.className = "actions compare";
      ask.append(document.createTextNode("Better than the previous answer? "),
                 button("This one", () => compare(conv, index, "a")), button("The previous one", () => compare(conv, index, "b")),
                 button("About the same", () => compare(conv, index, "tie")));
      div.append(ask);
    }
  }
  return div;
}
function button(label, fn) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; b.onclick = fn;
  return b;
}

function renderMessages() {
  const conv = current();
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  box.replaceChildren(...conv.messages.map((m, i) => renderMessage(m, i, conv)));
  if (atBottom) box.scrollTop = box.scrollHeight;
}
function renderAll() { renderList(); renderMessages(); }

let frame = 0;
function scheduleRender() {
  if (frame) return;
  frame = requestAnimationFrame(() => { frame = 0; renderMessages(); });
}

// --- actions ---------------------------------------------------------------------------------
function deleteConversation(id) {
  if (controller) return;
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (state.current === id) state.current = state.conversations[0] ? state.conversations[0].id : null;
  save(); renderAll();
}

function startEdit(div, conv, index) {
  if (controller) return;
  const body = div.querySelector(".body");
  const ta = document.createElement("textarea");
  ta.className = "edit"; ta.rows = 3; ta.value = conv.messages[index].content;
  const send = button("Send", () => {
    conv.messages = conv.messages.slice(0, index);
    conv.messages.push({role: "user", content: ta.value});
    save(); generate(conv);
  });
  const cancel = button("Cancel", renderMessages);
  body.replaceChildren(ta, send, cancel);
  div.querySelector(".actions").remove();
  ta.focus();
}

function regenerate(conv) {
  if (controller) return;
  let previous;
  while (conv.messages.length && conv.messages[conv.messages.length - 1].role === "assistant") previous = conv.messages.pop();
  generate(conv, previous && !previous.error ? previous.content : undefined);
}

// --- feedback (POST /v1/feedback: stored in the run's comparisons for reward models and DPO) ---
function promptFor(conv, index) {       // the conversation an answer answered
  return apiMessages({messages: conv.messages.slice(0, index)});
}

async function feedback(body) {
  const headers = {"Content-Type": "application/json"};
  if (state.settings.api_key) headers["Authorization"] = "Bearer " + state.settings.api_key;
  const res = await fetch("/v1/feedback", {method: "POST", headers, body: JSON.stringify(body)});
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
    setStatus("feedback not stored: " + msg);
    return false;
  }
  setStatus("thanks: feedback stored");
  return true;
}

async function rate(conv, index, rating) {
  const m = conv.messages[index];
  if (await feedback({messages: promptFor(conv, index), answer: m.content, rating})) {
    m.rated = rating; save(); renderMessages();
  }
}

async function compare(conv, index, preferred) {
  const m = conv.messages[index];
  if (await feedback({messages: promptFor(conv, index), answers: [m.content, m.previous], preferred})) {
    m.compared = preferred; save(); renderMessages();
  }
}

function send(text) {
  if (controller || !text.trim()) return;
  const conv = current();
  if (!conv.messages.length) conv.title = text.trim().slice(0, 40);
  conv.messages.push({role: "user", content: text});
  save(); renderList();
  generate(conv);
}

function apiMessages(conv) {
  const msgs = [];
  if (state.settings.system.trim()) msgs.push({role: "system", content: state.settings.system});
  for (const m of conv.messages) {
    if (m.streaming) continue;
    msgs.push({role: m.role, content: m.content || ""});
  }
  return msgs;
}

async function generate(conv, previous) {
  const s = state.settings;
  const body = {model: "picochat", messages: apiMessages(conv), stream: true,
                temperature: +s.temperature, top_p: +s.top_p, max_tokens: Math.max(1, parseInt(s.max_tokens) || 200)};
  if (s.seed !== "" && s.seed !== null && !isNaN(parseInt(s.seed))) body.seed = parseInt(s.seed);
  const answer = {role: "assistant", content: "", streaming: true};
  if (previous !== undefined) answer.previous = previous;
  conv.messages.push(answer);
  controller = new AbortController();
  $("stop").hidden = false; $("send").disabled = true;
  setStatus("generating…");
  renderMessages();
  const t0 = performance.now();
  let tokens = 0, finish = null;
  try {
    const headers = {"Content-Type": "application/json"};
    if (s.api_key) headers["Authorization"] = "Bearer " + s.api_key;
    const res = await fetch("/v1/chat/completions", {method: "POST", headers, body: JSON.stringify(body), signal: controller.signal});
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          for (const choice of chunk.choices || []) {
            const d = choice.delta || {};
            if (d.content) { answer.content += d.content; tokens++; }
            if (d.reasoning_content) answer.thinking = (answer.thinking || "") + d.reasoning_content;
            if (d.picochat_tool) (answer.tools = answer.tools || []).push(d.picochat_tool);
            if (d.picochat_notice) (answer.notices = answer.notices || []).push(d.picochat_notice);
            if (d.tool_calls) (answer.tool_calls = answer.tool_calls || []).push(...d.tool_calls);
            if (choice.finish_reason) finish = choice.finish_reason;
          }
        }
      }
      scheduleRender();
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else answer.error = "error: " + e.message;
  } finally {
    delete answer.streaming;
    controller = null;
    $("stop").hidden = true; $("send").disabled = false;
    const secs = (performance.now() - t0) / 1000;
    setStatus(`${finish || "ended"} · ${tokens} chunks in ${secs.toFixed(1)} s`);
    save(); renderMessages();
  }
}

// --- settings and wiring -----------------------------------------------------------------------
function bindSetting(id) {
  const el = $(id), out = $(id + "-out");
  el.value = state.settings[id];
  if (out) out.textContent = el.value;
  el.addEventListener("input", () => {
    state.settings[id] = el.value;
    if (out) out.textContent = el.value;
    save();
  });
}

function init() {
  for (const id of Object.keys(DEFAULTS)) bindSetting(id);
  $("new-chat").onclick = () => { if (!controller) { newConversation(); renderAll(); $("input").focus(); } };
  $("stop").onclick = () => controller && controller.abort();
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value;
    if (controller || !text.trim()) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  // an answer cut off by a reload is kept as it was, marked as interrupted
  for (const c of state.conversations) for (const m of c.messages) if (m.streaming) { delete m.streaming; m.error = "interrupted"; }
  current();
  renderAll();
  const headers = state.settings.api_key ? {"Authorization": "Bearer " + state.settings.api_key} : {};
  fetch("/v1/models", {headers}).then((r) => r.ok ? r.json() : null)
    .then((j) => { if (j && j.data && j.data[0]) $("model-name").textContent = j.data[0].id; }).catch(() => {});
  $("input").focus();
}

init();

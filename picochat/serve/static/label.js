// The labeling page: fetch a pair, show it, send the labeler's choice; keys 1 2 t x u.
// Everything shown is text (textContent), so answers can never inject markup.
"use strict";

const state = {pair: null, history: []};          // history: {label_id, pair} given here, newest last
const $ = (id) => document.getElementById(id);

function labeler() { return $("labeler").value.trim(); }

function status(text) { $("status").textContent = text || ""; }

function showProgress(p) {
  if (!p) return;
  $("progress").textContent = `you: ${p.yours} labels · all people: ${p.human_labels} · ` +
    `${p.waiting} pairs waiting · ${p.down_rated} down-rated answers to compare`;
}

function turn(role, text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  const who = document.createElement("div");
  who.className = "role";
  who.textContent = role;
  const body = document.createElement("div");
  body.textContent = text;
  div.append(who, body);
  return div;
}

function show(data) {
  state.pair = data;
  const conv = $("conversation");
  conv.replaceChildren(...data.messages.map((m) => turn(m.role, m.content || "")));
  document.querySelector("#answer-a .text").textContent = data.a;
  document.querySelector("#answer-b .text").textContent = data.b;
  $("better").value = "";
  showProgress(data.progress);
}

async function next() {
  if (!labeler()) { status("Type your name first: every label carries it."); $("labeler").focus(); return; }
  status("loading the next pair…");
  const r = await fetch(`/api/next?labeler=${encodeURIComponent(labeler())}`);
  const data = await r.json();
  if (!r.ok) { status(data.error || "could not load a pair"); return; }
  show(data);
  status("");
}

async function choose(label) {
  if (!state.pair) return;
  const body = {pair: state.pair.pair, label, labeler: labeler(), better: $("better").value || null};
  const r = await fetch("/api/label", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { status(data.error || "the label was not stored"); return; }
  state.history.push({label_id: data.label_id, pair: state.pair});
  showProgress(data.progress);
  await next();
}

async function undo() {
  const last = state.history.pop();
  if (!last) { status("nothing to undo"); return; }
  const r = await fetch("/api/undo", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify({label_id: last.label_id, labeler: labeler()})});
  const data = await r.json();
  if (!r.ok) { status(data.error || "could not undo"); return; }
  show({...last.pair, progress: data.progress});          // back to the pair, to label it again
  status("undone: label this pair again");
}

document.querySelectorAll("#choices button[data-label]").forEach((b) => b.addEventListener("click", () => choose(b.dataset.label)));
$("undo").addEventListener("click", undo);
$("labeler").addEventListener("change", () => { localStorage.setItem("picochat-labeler", labeler()); next(); });
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = {"1": "a", "2": "b", "t": "tie", "x": "both_bad"}[e.key];
  if (key) { e.preventDefault(); choose(key); } else if (e.key === "u") { e.preventDefault(); undo(); }
});

(async () => {
  const r = await fetch("/api/instructions");
  const info = await r.json();
  $("instructions").innerHTML = renderMarkdown(info.markdown);     // renderMarkdown escapes first
  $("version").textContent = `instructions: ${info.version}`;
  $("labeler").value = info.labeler || localStorage.getItem("picochat-labeler") || "";
  if (labeler()) next(); else status("Type your name to start.");
})();

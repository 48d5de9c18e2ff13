// The fleet page: polls /v1/fleet, shows every gate (those needing attention first) and the SOP
// card of each condition, and signs supervisor commands in the browser (docs/FLEET.md).
// Text from the network goes in with textContent only; SOP cards are HTML the central rendered
// from the venue's Markdown with raw HTML off.
"use strict";

const POLL_MS = 2000;
const DOMAIN = "gate-daemon/command/v1\u0000";
// PKCS#8 wrapping of a 32-byte Ed25519 seed (RFC 8410): this prefix, then the seed.
const PKCS8_PREFIX = "302e020100300506032b657004220420";
const SECRET_PREFIX = "ed25519-secret:";

let last = null; // the last answer of /v1/fleet
let signingKey = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function span(seconds) {
  // As gatectl fleet says a duration: 0.8 s, 45 s, 12 min, 3 h 05 min, 2 d 4 h.
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function offset(seconds) {
  const tenths = Math.round(seconds * 10) / 10 || 0; // no "-0.0"
  return `${tenths >= 0 ? "+" : ""}${tenths.toFixed(1)} s`;
}

function orDash(value, shown) {
  return value === null || value === undefined ? "–" : shown(value);
}

function laneCell(gate, beat) {
  const td = el("td");
  if (gate.lane === null) {
    td.textContent = "–";
    return td;
  }
  td.append(el("span", gate.lane, `lane-${gate.lane}`));
  const lane = beat && beat.status && beat.status.lane;
  if (lane && lane.by) td.append(el("span", ` by ${lane.by}`));
  if (lane && lane.message) td.append(el("span", lane.message, "lane-message"));
  return td;
}

function row(gate, beat) {
  const tr = el("tr", null, gate.conditions.length ? "attention" : "");
  tr.dataset.gate = gate.gate;
  tr.dataset.conditions = gate.conditions.join(" ");
  const cells = [
    [gate.gate],
    [gate.reachable ? "yes" : "NO"],
    null,
    [orDash(gate.mode, (m) => m)],
    [orDash(gate.manifest_version, (v) => `v${v}, ${span(gate.manifest_age_s)} old`)],
    [orDash(gate.scans, (n) => n), "num"],
    [orDash(gate.offline_scans, (n) => n), "num"],
    [orDash(gate.pending_upstream, (n) => n), "num"],
    [orDash(gate.peer_lag_s, (s) => span(s)), "num"],
    [orDash(gate.conflicts, (n) => n), "num"],
    [orDash(gate.clock_offset_s, offset), "num"],
    [orDash(gate.last_heard_s, (s) => `${span(s)} ago`)],
    [orDash(gate.capacity, (c) => c)],
  ];
  for (const cell of cells) {
    tr.append(cell === null ? laneCell(gate, beat) : el("td", cell[0], cell[1]));
  }
  const needs = el("td");
  if (!gate.conditions.length) needs.append(el("span", "all well", "well"));
  gate.conditions.forEach((name, i) => {
    needs.append(el("span", name, `condition ${name}`));
    needs.append(el("span", gate.reasons[i], "reason"));
  });
  tr.append(needs);
  return tr;
}

function cards(names, sop) {
  const box = $("cards");
  box.replaceChildren();
  for (const name of names) {
    const card = el("article", null, "card");
    card.dataset.condition = name;
    card.append(el("h3", name.replaceAll("_", " ")));
    const body = el("div");
    if (sop && sop[name]) {
      body.innerHTML = sop[name]; // rendered by the central from the venue's Markdown, raw HTML off
    } else {
      body.append(el("p", "No SOP card for this on the central ([central] sop).", "no-card"));
    }
    card.append(body);
    box.append(card);
  }
}

function gateChoices(roster) {
  const select = $("command-gate");
  const chosen = select.value;
  const ids = roster.join("\n");
  if (select.dataset.ids === ids) return;
  select.dataset.ids = ids;
  select.replaceChildren(...roster.map((id) => el("option", id)));
  if (roster.includes(chosen)) select.value = chosen;
}

function render(state) {
  $("central").textContent = `· central ${state.central} · manifest v${state.manifest_version ?? "–"}`;
  const beats = new Map(state.heartbeats.map((b) => [b.gate, b]));
  $("gates").tBodies[0].replaceChildren(...state.gates.map((g) => row(g, beats.get(g.gate))));
  const n = state.gates.length;
  $("summary").textContent = state.attention
    ? `${state.attention} of ${n} gates need attention`
    : `all ${n} gates well`;
  const shown = [...new Set(state.gates.flatMap((g) => g.conditions))];
  cards(shown, state.sop);
  gateChoices(state.roster);
}

function linkDown(why) {
  const link = $("link");
  link.className = "link-down";
  link.textContent = `central unreachable (${why}): the table shows its last answer`;
  if (last) cards(["central_down"], last.sop);
}

async function poll() {
  try {
    const answer = await fetch("/v1/fleet", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    last = await answer.json();
    render(last);
    const link = $("link");
    link.className = "link-ok";
    link.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    linkDown(error.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// ------------------------------------------------------------------ signed commands (contract A)

function hexBytes(hex) {
  return Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
}

function base64(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

function canonical(body) {
  // Python's json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
  const text = "{" + Object.keys(body).sort()
    .map((k) => `${JSON.stringify(k)}:${JSON.stringify(body[k])}`).join(",") + "}";
  return text.replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

async function loadKey(file) {
  const text = (await file.text()).trim();
  if (!text.startsWith(SECRET_PREFIX)) throw new Error("not a supervisor key file (ed25519-secret:...)");
  let seed;
  try {
    seed = Uint8Array.from(atob(text.slice(SECRET_PREFIX.length)), (c) => c.charCodeAt(0));
  } catch {
    throw new Error("the key file's base64 is damaged");
  }
  if (seed.length !== 32) throw new Error("the key file does not hold a 32-byte seed");
  const der = new Uint8Array([...hexBytes(PKCS8_PREFIX), ...seed]);
  return crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
}

function nonce() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function result(text, ok) {
  const out = $("command-result");
  out.textContent = text;
  out.className = ok ? "sent" : "failed";
}

async function send(kind, value) {
  const gate = $("command-gate").value;
  const supervisor = $("supervisor").value.trim();
  if (!signingKey) return result("Load your key file first.", false);
  if (!supervisor) return result("Type your supervisor id first.", false);
  if (!gate || !last) return result("No gate to send to yet.", false);
  const body = {
    v: 1, event: last.event, gate, kind, value, supervisor, issued_ms: Date.now(), nonce: nonce(),
  };
  const signed = new TextEncoder().encode(DOMAIN + canonical(body));
  const sig = base64(await crypto.subtle.sign({ name: "Ed25519" }, signingKey, signed));
  let answer;
  try {
    answer = await fetch("/v1/commands", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ command: body, sig }),
    });
  } catch (error) {
    return result(`Not sent: the central is unreachable (${error.message}).`, false);
  }
  const reply = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    return result(`Refused: ${reply.error || answer.status}${reply.detail ? ": " + reply.detail : ""}`, false);
  }
  return result(`Sent: ${kind} ${value === "" ? "(cleared)" : value} to ${gate}; it applies at the gate's next heartbeat.`, true);
}

function wire() {
  $("keyfile").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    signingKey = null;
    $("key-state").textContent = "no key loaded";
    if (!file) return;
    try {
      signingKey = await loadKey(file);
      $("key-state").textContent = `key loaded from ${file.name} (kept in this page only)`;
    } catch (error) {
      $("key-state").textContent = `key refused: ${error.message}`;
    }
    event.target.value = ""; // the file's bytes are not kept by the input
  });
  for (const button of document.querySelectorAll("#commands button[data-kind]")) {
    button.addEventListener("click", () => send(button.dataset.kind, button.dataset.value));
  }
  $("send-message").addEventListener("click", () => send("message", $("message").value));
  $("clear-message").addEventListener("click", () => send("message", ""));
}

wire();
poll();

// The gate screen: the last decision as a steward sees it, live from /screen/events.
// Plain JavaScript, no build step. Text goes in with textContent only: a holder's name
// or a reason is never read as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const OFFLINE_AFTER_MS = 3000; // a lost connection this long takes over the screen

  let holdMs = 1500;
  let status = null; // the last status strip
  let shown = null; // the scan on screen, until its hold ends
  let holdTimer = null;
  let countdownTimer = null;
  let lostTimer = null;
  let connected = false;
  let manualOn = false; // the steward's typed codes, as the gate allows them here
  let confirmOn = false; // the steward's confirm of a held allow, as the gate allows it here
  // Off loopback the gate asks for its pairing token: the kiosk's URL brings it once
  // (/screen?token=...); the tab keeps it, and the address bar and history lose it.
  const TOKEN_KEY = "gate-screen-token";
  const given = new URLSearchParams(location.search).get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);

  function set(id, text) {
    const el = $(id);
    el.textContent = text || "";
    el.hidden = !text;
  }

  function clock(iso) {
    const when = new Date(iso);
    const now = new Date();
    const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    if (when.toDateString() === now.toDateString()) return time;
    return when.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + " " + time;
  }

  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function countdownText(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    if (s === 0) return "Entry is open now";
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    if (h > 0) return "Opens in " + h + ":" + String(m).padStart(2, "0") + ":" + sec;
    return "Opens in " + m + ":" + sec;
  }

  function details(scan, receivedAt) {
    const lines = [];
    if (scan.used_gate || scan.used_at) {
      const ago = scan.used_ago_s !== undefined ? " (" + span(scan.used_ago_s + (performance.now() - receivedAt) / 1000) + " ago)" : "";
      const where = scan.used_gate ? "at gate " + scan.used_gate : "";
      const when = scan.used_at ? clock(scan.used_at) + ago : "";
      lines.push(["Used", where, when].filter(Boolean).join(" "));
    }
    if (scan.opens_at) lines.push("Entry opens " + clock(scan.opens_at));
    const place = [];
    if (scan.seat) place.push("Seat " + scan.seat);
    if (scan.zone) place.push(scan.zone);
    if (scan.session) place.push(scan.session);
    if (place.length) lines.push(place.join(" · "));
    if (scan.entries_allowed > 1) lines.push("Entries used: " + scan.entries_used + " of " + scan.entries_allowed);
    if (!scan.recorded) lines.push("Not recorded");
    return lines.join("\n");
  }

  function stopCountdown() {
    if (countdownTimer !== null) clearInterval(countdownTimer);
    countdownTimer = null;
  }

  function showScan(scan) {
    const receivedAt = performance.now();
    shown = scan;
    stopCountdown();
    body.dataset.state = scan.outcome;
    body.dataset.reason = scan.reason;
    set("headline", scan.headline);
    set("text", scan.text);
    set("name", scan.name);
    set("details", details(scan, receivedAt));
    set("advice", scan.advice);
    if (scan.opens_in_ms !== undefined) {
      const deadline = receivedAt + scan.opens_in_ms;
      const tick = () => set("countdown", countdownText(deadline - performance.now()));
      tick();
      countdownTimer = setInterval(tick, 250);
    } else {
      set("countdown", "");
    }
    if (holdTimer !== null) clearTimeout(holdTimer);
    holdTimer = null;
    if (scan.pending) {
      body.dataset.state = "pending"; // held until confirmed or voided: the status strip says which
    } else {
      holdTimer = setTimeout(endHold, holdMs);
    }
    showConfirm();
  }

  function showConfirm() {
    const lane = status && status.lane;
    $("confirm").hidden = !(confirmOn && lane && lane.pending_ticket !== null);
  }

  function endHold() {
    if (holdTimer !== null) clearTimeout(holdTimer);
    holdTimer = null;
    shown = null;
    stopCountdown();
    idle();
  }

  function idle() {
    if (shown !== null) return;
    delete body.dataset.reason;
    set("name", "");
    set("countdown", "");
    if (!connected) {
      body.dataset.state = "disconnected";
      set("headline", "No connection");
      set("text", "This screen cannot reach its gate");
      set("details", "Reconnecting by itself. The gate still decides, with its lights.");
      set("advice", "If this stays, call the tech");
      return;
    }
    if (status !== null && !status.in_service) {
      body.dataset.state = "out_of_service";
      set("headline", "Out of service");
      set("text", status.problem.charAt(0).toUpperCase() + status.problem.slice(1));
      set("details", "");
      set("advice", status.advice);
      return;
    }
    body.dataset.state = "ready";
    set("headline", "Ready");
    set("text", "Scan a ticket");
    set("details", "");
    set("advice", "");
  }

  function showStatus(next) {
    status = next;
    set("s-gate", "Gate " + next.gate);
    const lane = next.lane;
    set("s-lane", "Lane " + lane.state);
    $("s-lane").dataset.state = lane.state;
    set("message", lane.message);
    if (shown !== null && shown.pending && lane.pending_ticket === null) {
      endHold(); // confirmed (the allow follows) or voided: it waits no more
    }
    showConfirm();
    let mode = next.mode === "local" ? "Local decisions" : next.mode === "online" ? "Online" : "OFFLINE";
    if (next.central_up !== null) mode += next.central_up ? " · central up" : " · central down";
    set("s-mode", mode);
    set("s-peers", next.peers ? "Peers " + next.peers_up + "/" + next.peers + " up" : "");
    set(
      "s-manifest",
      next.manifest_version !== null
        ? "Manifest v" + next.manifest_version + " · " + span(next.manifest_age_s) + " old"
        : "No manifest",
    );
    set("s-clock", next.clock_warning ? "Clock: " + next.clock_warning : "");
    set("s-scans", next.scans_hour + (next.scans_hour === 1 ? " scan" : " scans") + " this hour");
    set("s-staff", next.staff ? "Signed in: " + next.staff : "Nobody signed in");
    idle();
  }

  function linkState(up) {
    connected = up;
    const link = $("s-link");
    link.textContent = up ? "live" : "reconnecting";
    link.dataset.state = up ? "live" : "lost";
    body.dataset.connection = up ? "live" : "lost";
    if (up) {
      if (lostTimer !== null) clearTimeout(lostTimer);
      lostTimer = null;
      idle();
    } else if (lostTimer === null) {
      lostTimer = setTimeout(() => {
        lostTimer = null;
        endHold(); // a decision kept on a screen that lost its gate would be taken for a new one
      }, OFFLINE_AFTER_MS);
    }
  }

  function connect() {
    // EventSource sends no headers: the stream takes the token in its query.
    const query = token ? "?token=" + encodeURIComponent(token) : "";
    const events = new EventSource("/screen/events" + query);
    events.addEventListener("hello", (event) => {
      const hello = JSON.parse(event.data);
      holdMs = hello.hold_ms;
      manualOn = hello.manual_entry;
      confirmOn = hello.confirm;
      $("manual").hidden = !manualOn;
      showConfirm();
      document.title = "Gate " + hello.gate;
      linkState(true);
    });
    events.addEventListener("status", (event) => showStatus(JSON.parse(event.data)));
    events.addEventListener("scan", (event) => showScan(JSON.parse(event.data)));
    // EventSource reconnects by itself after an error; the strip says so meanwhile.
    events.addEventListener("error", () => linkState(false));
  }

  function post(path, data) {
    return fetch(path, {
      method: "POST",
      headers: token
        ? { "Content-Type": "application/json", "X-Screen-Token": token }
        : { "Content-Type": "application/json" },
      body: JSON.stringify(data),
    });
  }

  async function manualEntry(event) {
    event.preventDefault();
    const input = $("code");
    const payload = input.value.trim();
    if (!payload) return;
    set("manual-error", "");
    try {
      const answer = await post("/screen/scan", { payload: payload });
      const data = await answer.json();
      if (!answer.ok) {
        set("manual-error", data.detail || data.error);
        return;
      }
      input.value = "";
      if (!connected) showScan(data.scan); // the event stream shows it otherwise
    } catch (error) {
      set("manual-error", "The gate did not answer; try again");
    }
  }

  async function confirmEntry() {
    $("confirm").hidden = true;
    try {
      await post("/screen/confirm", {});
    } catch (error) {
      set("manual-error", "The gate did not answer; press the steward's button");
    }
  }

  $("manual").addEventListener("submit", manualEntry);
  $("confirm").addEventListener("click", confirmEntry);
  connect();
})();

// The holder's page of a rotating ticket (docs/ROTATING.md): every `period` seconds it signs the
// certificate and the current time step with the holder key, and draws the code as a QR.
// Offline: the key, the certificate and the libraries are all inside this file. The key is
// imported into WebCrypto as non-extractable and never leaves the page; a browser without
// Ed25519 in WebCrypto signs with the bundled @noble/ed25519 instead (the same signatures:
// Ed25519 is deterministic).
"use strict";

const PREFIX = "GDR1:";
const DOMAIN = new TextEncoder().encode("gate-daemon/rotating/v1\u0000");
// PKCS#8 wrapping of a 32-byte Ed25519 seed (RFC 8410): this prefix, then the seed.
const PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

const ticket = JSON.parse(document.getElementById("ticket").textContent);
const $ = (id) => document.getElementById(id);
let sign = null; // bytes -> Promise<Uint8Array>: the holder key's Ed25519 signature
let shownStep = null;
let drawing = false;

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function base32(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function u32(n) {
  return new Uint8Array([n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255]);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

async function codeFor(step) {
  const certificate = fromBase64(ticket.certificate);
  const stamped = concat(certificate, u32(step));
  const signature = await sign(concat(DOMAIN, stamped));
  return PREFIX + base32(concat(stamped, signature));
}

function draw(payload) {
  const qr = qrcode(0, "M");
  qr.addData(payload, "Alphanumeric");
  qr.make();
  const modules = qr.getModuleCount();
  const quiet = 4;
  const room = Math.min(window.innerWidth - 32, 420);
  const cell = Math.max(3, Math.floor(room / (modules + 2 * quiet)));
  const canvas = $("code");
  canvas.width = canvas.height = (modules + 2 * quiet) * cell;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#000";
  for (let r = 0; r < modules; r += 1) {
    for (let c = 0; c < modules; c += 1) {
      if (qr.isDark(r, c)) ctx.fillRect((c + quiet) * cell, (r + quiet) * cell, cell, cell);
    }
  }
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function utcText(now) {
  const d = new Date(now);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

function clockText(now) {
  const d = new Date(now);
  const local = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return `This phone's clock, above in UTC (${date}); local time ${local}`;
}

function acceptsText() {
  // The gate takes a code of its own step or of `tolerance` steps either side: a clock within
  // tolerance × period seconds of the gate's is always accepted (docs/ROTATING.md).
  const issued = new Date(ticket.issued_at * 1000).toISOString().slice(0, 16).replace("T", " ");
  const within = ticket.tolerance * ticket.period;
  const rule = within > 0
    ? `The gate accepts this code while this clock is within ${within} s of the gate's clock.`
    : `The gate accepts this code only while this clock and the gate's are in the same ${ticket.period}-second step.`;
  return `${rule} Ticket issued ${issued} UTC: this clock cannot be earlier than that.`;
}

function clockWarning(seconds) {
  // The gate accepts a code only near its own time: a clock that is provably wrong makes codes
  // the gate refuses as expired_code. Provably: before this ticket was issued, or after it ended.
  const slack = ticket.period * (ticket.tolerance + 1);
  if (seconds < ticket.issued_at - slack) {
    return "This phone's clock is behind (earlier than when this ticket was issued): the gate will " +
      "refuse the code as expired. Set the clock to automatic, or show this to a steward.";
  }
  if (ticket.valid_until !== null && seconds > ticket.valid_until + slack) {
    return "This phone's clock is after the ticket's end: if that is wrong, the gate will refuse the " +
      "code. Set the clock to automatic, or show this to a steward.";
  }
  return "";
}

async function tick() {
  const now = Date.now();
  const seconds = now / 1000;
  const step = Math.floor(seconds / ticket.period);
  const left = ticket.period - (seconds - step * ticket.period);
  $("bar-fill").style.width = `${(100 * left) / ticket.period}%`;
  $("countdown").textContent = `New code in ${Math.ceil(left)} s`;
  $("utc").textContent = utcText(now);
  $("clock").textContent = clockText(now);
  const warning = clockWarning(seconds);
  $("warning").textContent = warning;
  $("warning").hidden = !warning;
  if (step === shownStep || drawing || sign === null) return;
  drawing = true;
  try {
    draw(await codeFor(step));
    shownStep = step;
    $("code").dataset.step = String(step);
  } finally {
    drawing = false;
  }
}

async function webCryptoSigner() {
  // Chrome and Edge 137+, Safari 17+, Firefox 129+. Tried once here, so a browser that imports
  // the key but cannot sign with it falls back too.
  const der = concat(new Uint8Array(PKCS8_PREFIX), fromBase64(ticket.holder_seed));
  const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  const signer = async (bytes) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, bytes));
  await signer(new Uint8Array(1));
  return signer;
}

async function nobleSigner() {
  // The bundled @noble/ed25519 is a module script: it has run by DOMContentLoaded.
  if (document.readyState === "loading") {
    await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  }
  const lib = globalThis.holderEd25519;
  if (!lib) throw new Error("the bundled Ed25519 library did not load");
  const seed = fromBase64(ticket.holder_seed);
  const signer = (bytes) => lib.signAsync(bytes, seed);
  await signer(new Uint8Array(1));
  return signer;
}

async function start() {
  $("event").textContent = ticket.event;
  $("seat").textContent = [ticket.seat, ticket.session, ticket.zone].filter(Boolean).join(" · ");
  $("accepts").textContent = acceptsText();
  try {
    sign = await webCryptoSigner();
    document.body.dataset.signer = "webcrypto";
  } catch (err) {
    try {
      sign = await nobleSigner();
      document.body.dataset.signer = "noble";
    } catch (err2) {
      $("problem").textContent = "This browser cannot sign the ticket code (it needs Ed25519, or " +
        "BigInt and SHA-512 in WebCrypto). Ask the box office for a printed ticket.";
      $("problem").hidden = false;
      return;
    }
  }
  await tick();
  setInterval(tick, 250);
}

start();

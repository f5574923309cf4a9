// streamer's browser demo: the REST API fills the choices, the WebSocket streams text out and audio in,
// an AudioWorklet plays it as it arrives. Plain ES modules, no build step.
//
// Everything the page knows is in `state`, also published as `window.demoState` for tests and curious
// people at the console.

import { decode } from "./msgpack.js";

const STREAM_PATH = "/api/v1/stream";
// The page is served at <prefix>/demo/; under `streamer serve --root-path /tts` behind a proxy, the
// prefix is /tts, and the API and the stream live under it too.
const BASE = location.pathname.replace(/\/demo(\/.*)?$/, "");
const KEY_STORAGE = "streamer-demo-api-key";
const SESSIONS_REFRESH_MS = 5000;
const PING_EVERY_MS = 5000;
const LOG_LINES = 200;
const EXTENSIONS = { pcm: "wav", wav: "wav", ogg: "ogg", mp3: "mp3", flac: "flac", aac: "aac" };
const MIME = {
  wav: "audio/wav", ogg: "audio/ogg", mp3: "audio/mpeg", flac: "audio/flac", aac: "audio/aac",
};

const state = {
  status: "disconnected", // disconnected | connecting | ready | closed
  streamUrl: null, // where the page opens its WebSocket (without the API key)
  needsKey: false,
  sessionId: null,
  generation: 0, // the session's current generation (from ready / interrupted)
  dropBelow: 0, // audio of a generation under this is dropped on arrival (set at once on Interrupt)
  lastSeq: -1, // of the last audio frame received
  format: null,
  sampleRate: null, // of the audio the server sends
  contextRate: null, // of the AudioContext
  speaking: false, // a turn was sent and its `done` has not come
  turnStartedAt: null, // performance.now() when the turn's first text was sent
  ttfaMs: null, // first text sent -> first audio frame received
  firstSoundMs: null, // first text sent -> the worklet started playing it
  watching: false, // the worklet was asked to report when the turn's first frame plays
  receivedSamples: 0, // audio received, in the server's samples
  receivedSeconds: 0,
  playedSamples: 0, // the worklet's counter, at the context's rate
  playedSeconds: 0,
  bufferedSamples: 0,
  bufferedFrames: 0,
  staleBufferedFrames: 0, // frames of an older generation still queued in the worklet (always 0)
  staleDropped: 0, // frames that arrived for an older generation and were dropped
  underruns: 0,
  playing: false,
  framesReceived: 0,
  tokensSent: 0,
  tokensTotal: 0,
  turns: 0,
  interrupts: 0,
  rttMs: null,
  lastError: null,
  lastDownload: null,
  events: [], // the type of every event received, in order (audio and pong left out)
};
window.demoState = state;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  auth: $("auth"),
  authMessage: $("auth-message"),
  apiKey: $("api-key"),
  useKey: $("use-key"),
  text: $("text"),
  engine: $("engine"),
  voice: $("voice"),
  format: $("format"),
  speed: $("speed"),
  speedOut: $("speed-out"),
  mode: document.querySelectorAll('input[name="mode"]'),
  rate: $("rate"),
  jitter: $("jitter"),
  speak: $("speak"),
  interrupt: $("interrupt"),
  disconnect: $("disconnect"),
  message: $("message"),
  download: $("download"),
  log: $("log"),
  logAudio: $("log-audio"),
  sessions: $("sessions-body"),
  sessionsNote: $("sessions-note"),
  refreshSessions: $("refresh-sessions"),
  sessionDetails: $("session-details"),
  readouts: Object.fromEntries(
    [...document.querySelectorAll("[data-readout]")].map((el) => [el.dataset.readout, el]),
  ),
};

// ---- REST ----------------------------------------------------------------------------------------

class AuthRequired extends Error {}

function apiKey() {
  return ui.apiKey.value.trim();
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(BASE + path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    showAuth(apiKey() ? "The server did not accept this API key." : "This server needs an API key.");
    throw new AuthRequired("API key needed");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail !== undefined ? JSON.stringify(body.detail) : response.statusText;
    throw new Error(`${options.method || "GET"} ${path}: ${response.status} ${detail}`);
  }
  return body;
}

function showAuth(message) {
  state.needsKey = true;
  ui.auth.classList.add("needed");
  ui.authMessage.textContent = message;
  setMessage(message, "warn");
  ui.apiKey.focus();
}

function hideAuth() {
  state.needsKey = false;
  ui.auth.classList.remove("needed");
  ui.authMessage.textContent = "";
}

async function loadChoices() {
  let engines;
  let formats;
  try {
    engines = await api("/api/v1/engines"); // first alone: a server that wants a key says so once
    formats = await api("/api/v1/formats");
  } catch (error) {
    if (!(error instanceof AuthRequired)) setMessage(`Could not load the engines: ${error.message}`, "error");
    return false;
  }
  hideAuth();
  fillSelect(
    ui.engine,
    engines.map((e) => ({
      value: e.name,
      label: e.available ? e.name : `${e.name} (unavailable)`,
      disabled: !e.available,
      title: e.reason || (e.languages || []).join(", "),
      selected: e.default,
    })),
  );
  fillSelect(
    ui.format,
    formats.formats.map((f) => ({ value: f, label: f === "pcm" ? "pcm (live)" : f, selected: f === "pcm" })),
  );
  await loadVoices();
  setMessage("Ready. Type something and press Speak.", "info");
  refreshSessions();
  return true;
}

async function loadVoices() {
  const engine = ui.engine.value;
  if (!engine) return;
  const voices = await api(`/api/v1/engines/${encodeURIComponent(engine)}/voices`);
  const byLanguage = new Map();
  for (const voice of voices) {
    if (!byLanguage.has(voice.language)) byLanguage.set(voice.language, []);
    byLanguage.get(voice.language).push(voice);
  }
  ui.voice.replaceChildren(new Option("server default", ""));
  for (const [language, members] of [...byLanguage].sort((a, b) => a[0].localeCompare(b[0]))) {
    const group = document.createElement("optgroup");
    group.label = language;
    for (const voice of members) {
      const details = [voice.gender, voice.quality].filter(Boolean).join(", ");
      group.append(new Option(details ? `${voice.name} (${details})` : voice.name, voice.name));
    }
    ui.voice.append(group);
  }
  ui.voice.dataset.count = String(voices.length);
}

function fillSelect(select, options) {
  select.replaceChildren(
    ...options.map((o) => {
      const option = new Option(o.label, o.value, false, Boolean(o.selected));
      option.disabled = Boolean(o.disabled);
      if (o.title) option.title = o.title;
      return option;
    }),
  );
}

// ---- playback ------------------------------------------------------------------------------------

let audio = null; // {context, node}

async function ensureAudio() {
  if (audio) {
    if (audio.context.state === "suspended") await audio.context.resume();
    return audio;
  }
  const context = new AudioContext({ latencyHint: "interactive" });
  await context.audioWorklet.addModule("player-worklet.js");
  const node = new AudioWorkletNode(context, "streamer-player", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { jitterMs: jitterMs() },
  });
  node.connect(context.destination);
  node.port.onmessage = (event) => onPlayer(event.data);
  if (context.state === "suspended") await context.resume();
  state.contextRate = context.sampleRate;
  audio = { context, node };
  return audio;
}

function jitterMs() {
  return Math.max(0, Math.min(1000, Number(ui.jitter.value) || 0));
}

function onPlayer(message) {
  if (message.type === "reached") {
    if (state.turnStartedAt !== null && state.firstSoundMs === null && message.generation >= state.dropBelow) {
      state.firstSoundMs = performance.now() - state.turnStartedAt;
    }
    render();
    return;
  }
  state.playedSamples = message.played;
  state.playedSeconds = message.played / state.contextRate;
  state.bufferedSamples = message.buffered;
  state.bufferedFrames = message.frames;
  state.staleBufferedFrames = message.stale;
  state.underruns = message.underruns;
  state.playing = message.playing;
  state.playingGeneration = message.generation;
  state.playingSeq = message.seq;
  render();
}

// A linear resampler that keeps its phase across frames, so frame joins stay smooth.
export class Resampler {
  constructor(from, to) {
    this.from = from;
    this.to = to;
    this.step = from / to;
    this.pos = 0; // where the next output sample lies, in input samples from the frame's first
    this.last = 0; // the previous frame's last sample (input index -1)
  }

  process(input) {
    if (this.from === this.to) return input;
    const n = input.length;
    const count = n - 1 >= this.pos ? Math.floor((n - 1 - this.pos) / this.step) + 1 : 0;
    const out = new Float32Array(count);
    let pos = this.pos;
    for (let i = 0; i < count; i++, pos += this.step) {
      const index = Math.floor(pos);
      const frac = pos - index;
      const a = index < 0 ? this.last : input[index];
      const b = index + 1 < n ? input[index + 1] : a;
      out[i] = a + (b - a) * frac;
    }
    this.pos = pos - n;
    if (n) this.last = input[n - 1];
    return out;
  }
}

let resampler = null;

function pcmToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

function queueAudio(generation, seq, samples) {
  if (!audio || !samples.length) return;
  if (state.firstSoundMs === null && !state.watching) {
    state.watching = true; // the turn's first frame to be played: time it
    audio.node.port.postMessage({ type: "watch", generation, seq });
  }
  audio.node.port.postMessage({ type: "frame", generation, seq, data: samples }, [samples.buffer]);
}

// ---- the stream ----------------------------------------------------------------------------------

let ws = null;
let ready = null; // a promise of the `ready` event of the socket being opened
let pingTimer = null;
let pingSent = new Map();
let tokenTimer = null;
let turnAudio = []; // this turn's audio data, for non-live formats and the download link

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  state.streamUrl = `${scheme}//${location.host}${BASE}${STREAM_PATH}`;
  const key = apiKey();
  return key ? `${state.streamUrl}?api_key=${encodeURIComponent(key)}` : state.streamUrl;
}

function sessionConfig() {
  const config = { speed: Number(ui.speed.value) };
  if (ui.engine.value) config.engine = ui.engine.value;
  if (ui.voice.value) config.voice = ui.voice.value;
  if (ui.format.value) config.format = ui.format.value;
  // Ask for the context's own rate: no resampling in the page when the server can give it.
  if (state.contextRate >= 8000 && state.contextRate <= 48000) config.sample_rate = state.contextRate;
  return config;
}

async function connect() {
  if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) && ready) return ready;
  await ensureAudio();
  setStatus("connecting");
  const socket = new WebSocket(streamUrl());
  socket.binaryType = "arraybuffer";
  ws = socket;
  let opened = false;
  ready = new Promise((resolve, reject) => {
    socket.onopen = () => {
      opened = true;
      send({ type: "start", config: sessionConfig() });
    };
    socket.onmessage = (event) => {
      const message = typeof event.data === "string" ? JSON.parse(event.data) : decode(event.data);
      if (message.type === "ready") resolve(message);
      if (message.type === "error" && message.fatal && state.status === "connecting") {
        reject(new Error(`${message.code}: ${message.message}`));
      }
      onMessage(message);
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      onClosed(event, opened);
      reject(new Error(opened ? `the connection closed (${event.code})` : "could not connect"));
    };
  });
  ready.catch(() => {}); // callers that await it see the rejection; nobody else should
  return ready;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function onClosed(event, opened) {
  stopTokens();
  clearInterval(pingTimer);
  pingTimer = null;
  ws = null;
  ready = null;
  state.speaking = false;
  state.sessionId = null;
  setStatus(opened ? "closed" : "disconnected");
  if (!opened || event.code === 4401) {
    // A refused handshake says nothing to a browser: ask the REST API whether a key is the reason.
    api("/api/v1/formats").then(
      () => setMessage("Could not open the WebSocket.", "error"),
      () => {},
    );
  } else if (event.code !== 1000 || !state.lastError) {
    setMessage(`Connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""}).`, "info");
  }
  logLine(`closed ${event.code}${event.reason ? ` ${event.reason}` : ""}`);
  refreshSessions();
  render();
}

const DATA_EVENTS = new Set(["audio", "chunk_start", "chunk_end", "done"]);

function onMessage(message) {
  if (DATA_EVENTS.has(message.type) && message.generation < state.dropBelow) {
    // Sent before the server took our interrupt: none of it is played or shown.
    if (message.type === "audio") state.staleDropped += 1;
    return;
  }
  if (message.type !== "audio" && message.type !== "pong") state.events.push(message.type);
  switch (message.type) {
    case "audio":
      onAudio(message);
      return;
    case "ready":
      state.sessionId = message.session_id;
      state.generation = message.generation;
      state.dropBelow = message.generation;
      state.format = message.audio.format;
      state.sampleRate = message.audio.sample_rate;
      setStatus("ready");
      startPings();
      refreshSessions();
      logLine(`ready session ${message.session_id} · ${message.engine}/${message.voice} · ${message.audio.format} ${message.audio.sample_rate} Hz`);
      break;
    case "configured":
      logLine(`configured ${message.engine}/${message.voice} · ${message.audio.format} ${message.audio.sample_rate} Hz · speed ${message.speed}`);
      break;
    case "chunk_start":
      logLine(`chunk_start g${message.generation} #${message.chunk} “${message.text}”`);
      break;
    case "chunk_end":
      logLine(`chunk_end g${message.generation} #${message.chunk} · ${message.audio_ms} ms audio in ${message.synth_ms} ms`);
      break;
    case "done":
      onDone(message);
      break;
    case "interrupted":
      state.generation = message.generation;
      state.dropBelow = Math.max(state.dropBelow, message.generation);
      logLine(`interrupted → generation ${message.generation} (last seq ${message.last_seq})`);
      break;
    case "pong": {
      const sent = pingSent.get(message.id);
      pingSent.delete(message.id);
      if (sent !== undefined) state.rttMs = performance.now() - sent;
      break;
    }
    case "error":
      state.lastError = message;
      logLine(`error ${message.code}: ${message.message}`, "error");
      if (message.code === "unauthorized") showAuth("The server needs a valid API key for the WebSocket.");
      else setMessage(`${message.code}: ${message.message}`, "error");
      break;
    default:
      logLine(message.type);
  }
  render();
}

function onAudio(frame) {
  state.framesReceived += 1;
  state.lastSeq = frame.seq;
  state.format = frame.format;
  state.sampleRate = frame.sample_rate;
  state.receivedSamples += frame.samples;
  state.receivedSeconds += frame.samples / frame.sample_rate;
  if (state.ttfaMs === null && state.turnStartedAt !== null) state.ttfaMs = performance.now() - state.turnStartedAt;
  turnAudio.push(frame.data);
  if (ui.logAudio.checked) logLine(`audio g${frame.generation} seq ${frame.seq} · ${frame.samples} samples`);
  if (frame.format === "pcm") {
    const rate = audio.context.sampleRate;
    if (!resampler || resampler.from !== frame.sample_rate || resampler.to !== rate) {
      resampler = new Resampler(frame.sample_rate, rate);
    }
    queueAudio(frame.generation, frame.seq, resampler.process(pcmToFloat(frame.data)));
  }
  render();
}

async function onDone(message) {
  state.speaking = false;
  logLine(`done · last seq ${message.seq_last}`);
  const format = state.format || ui.format.value;
  const chunks = turnAudio;
  turnAudio = [];
  const generation = state.generation;
  const blob = format === "pcm" ? wavFile(chunks, state.sampleRate) : new Blob(chunks, { type: MIME[format] });
  offerDownload(blob, format);
  const total = message.audio_ms !== undefined ? ` (${(message.audio_ms / 1000).toFixed(2)} s of audio)` : "";
  setMessage(`Turn ${state.turns} fully received${total}; playing it out.`, "info");
  if (format !== "pcm" && chunks.length) {
    // Compressed formats play once the turn is complete: decodeAudioData wants a whole file.
    try {
      const buffer = await audio.context.decodeAudioData(await blob.arrayBuffer());
      if (generation >= state.dropBelow) queueAudio(generation, message.seq_last, buffer.getChannelData(0).slice());
    } catch (error) {
      setMessage(`This browser cannot decode ${format}; use the download link.`, "warn");
      logLine(`could not decode ${format}: ${error.message || error}`, "error");
    }
  }
  if (audio) audio.node.port.postMessage({ type: "end", generation });
  render();
}

function wavFile(chunks, rate) {
  const length = chunks.reduce((sum, c) => sum + c.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + length, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, length, true);
  return new Blob([header, ...chunks], { type: "audio/wav" });
}

function offerDownload(blob, format) {
  if (state.lastDownload) URL.revokeObjectURL(state.lastDownload);
  state.lastDownload = URL.createObjectURL(blob);
  ui.download.href = state.lastDownload;
  ui.download.download = `streamer-turn-${state.turns}.${EXTENSIONS[format] || "bin"}`;
  ui.download.textContent = `Download last turn (.${EXTENSIONS[format] || "bin"}, ${(blob.size / 1024).toFixed(1)} KiB)`;
  ui.download.hidden = false;
}

function startPings() {
  clearInterval(pingTimer);
  let id = 0;
  pingSent = new Map();
  pingTimer = setInterval(() => {
    id += 1;
    pingSent.set(id, performance.now());
    send({ type: "ping", id });
  }, PING_EVERY_MS);
}

// ---- actions -------------------------------------------------------------------------------------

function tokens(text) {
  // Roughly what a language model streams: words with their leading space, long words in pieces.
  const out = [];
  for (const word of text.match(/\s*\S+/g) || []) {
    for (let i = 0; i < word.length; i += 6) out.push(word.slice(i, i + 6));
  }
  return out;
}

async function speak() {
  const text = ui.text.value;
  if (!text.trim()) {
    setMessage("Type some text first.", "warn");
    return;
  }
  if (state.needsKey) {
    if (!apiKey()) {
      showAuth("This server needs an API key: enter it above, then press Speak.");
      return;
    }
    rememberKey();
    if (!(await loadChoices())) return;
  }
  ui.speak.disabled = true;
  try {
    await connect();
  } catch (error) {
    setMessage(`Could not start a session: ${error.message}`, "error");
    ui.speak.disabled = false;
    render();
    return;
  }
  if (tokenTimer !== null) {
    stopTokens();
    send({ type: "flush" }); // the tokens already sent make a turn of their own
  }
  state.turns += 1;
  state.speaking = true;
  state.turnStartedAt = performance.now();
  state.ttfaMs = null;
  state.firstSoundMs = null;
  state.watching = false;
  state.lastError = null;
  turnAudio = [];
  ui.speak.disabled = false;
  if (mode() === "tokens") {
    const pieces = tokens(text);
    const interval = 1000 / Math.max(1, Math.min(100, Number(ui.rate.value) || 20));
    state.tokensTotal = pieces.length;
    state.tokensSent = 0;
    let next = performance.now();
    const tick = () => {
      tokenTimer = null;
      send({ type: "text", text: pieces[state.tokensSent] });
      state.tokensSent += 1;
      if (state.tokensSent >= pieces.length) {
        send({ type: "flush" });
        render();
        return;
      }
      next += interval;
      tokenTimer = setTimeout(tick, Math.max(0, next - performance.now()));
      render();
    };
    tick();
    setMessage(`Streaming ${pieces.length} tokens at ${Math.round(1000 / interval)}/s…`, "info");
  } else {
    state.tokensTotal = 0;
    state.tokensSent = 0;
    send({ type: "text", text, flush: true });
    setMessage("Speaking…", "info");
  }
  render();
}

function stopTokens() {
  if (tokenTimer !== null) clearTimeout(tokenTimer);
  tokenTimer = null;
}

function interrupt() {
  stopTokens();
  // Silence at once: the page drops what it holds of the current generation before the server answers.
  state.dropBelow = state.generation + 1;
  if (audio) audio.node.port.postMessage({ type: "flush", generation: state.dropBelow });
  resampler = null;
  turnAudio = [];
  state.speaking = false;
  state.interrupts += 1;
  send({ type: "interrupt" });
  setMessage("Interrupted.", "info");
  render();
}

function disconnect() {
  stopTokens();
  if (ws) ws.close(1000, "bye");
}

function mode() {
  return [...ui.mode].find((r) => r.checked)?.value || "whole";
}

function reconfigure() {
  if (state.status !== "ready") return;
  const config = sessionConfig();
  delete config.sample_rate; // unchanged
  send({ type: "config", config });
}

// ---- sessions panel ------------------------------------------------------------------------------

let sessionsTimer = null;
let sessionsRequest = 0;

async function refreshSessions() {
  clearTimeout(sessionsTimer);
  sessionsTimer = setTimeout(refreshSessions, SESSIONS_REFRESH_MS);
  const request = ++sessionsRequest;
  let body;
  try {
    body = await api("/api/v1/sessions");
  } catch (error) {
    if (!(error instanceof AuthRequired)) ui.sessionsNote.textContent = error.message;
    return;
  }
  if (request !== sessionsRequest) return; // a later refresh is on its way: never show an older list
  ui.sessionsNote.textContent = `${body.total} session${body.total === 1 ? "" : "s"}`;
  ui.sessions.replaceChildren(
    ...body.sessions.map((s) => {
      const row = document.createElement("tr");
      row.dataset.sessionId = s.session_id;
      const mine = s.session_id === state.sessionId;
      if (mine) row.classList.add("mine");
      const id = cell(`${s.session_id.slice(0, 12)}…`, "mono");
      id.title = s.session_id;
      if (mine) id.append(badge("this page"));
      row.append(
        id,
        cell(s.connected ? "yes" : "no"),
        cell(time(s.created_at)),
        cell(time(s.last_activity)),
        actions(s.session_id),
      );
      return row;
    }),
  );
  if (!body.sessions.length) {
    const row = document.createElement("tr");
    const empty = cell("No sessions yet: press Speak to open one.", "empty");
    empty.colSpan = 5;
    row.append(empty);
    ui.sessions.append(row);
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function badge(text) {
  const span = document.createElement("span");
  span.className = "badge";
  span.textContent = text;
  return span;
}

function time(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString();
}

function actions(sessionId) {
  const td = document.createElement("td");
  td.className = "actions";
  const button = (label, title, run) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", () => run().catch((error) => setMessage(error.message, "error")));
    return b;
  };
  const path = `/api/v1/sessions/${encodeURIComponent(sessionId)}`;
  td.append(
    button("Details", "GET the session", async () => {
      ui.sessionDetails.textContent = JSON.stringify(await api(path), null, 2);
      ui.sessionDetails.hidden = false;
    }),
    button("Interrupt", "POST /interrupt for it", async () => {
      const answer = await api(`/api/v1/interrupt/${encodeURIComponent(sessionId)}`, { method: "POST" });
      logLine(`REST interrupt → generation ${answer.generation}`);
      refreshSessions();
    }),
    button("Close", "DELETE the session", async () => {
      await api(path, { method: "DELETE" });
      refreshSessions();
    }),
  );
  return td;
}

// ---- rendering -----------------------------------------------------------------------------------

function setStatus(status) {
  state.status = status;
  ui.status.textContent = status;
  ui.status.dataset.status = status;
}

function setMessage(text, kind) {
  ui.message.textContent = text;
  ui.message.dataset.kind = kind;
}

function logLine(text, kind) {
  const line = document.createElement("div");
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (kind) line.className = kind;
  ui.log.prepend(line);
  while (ui.log.childElementCount > LOG_LINES) ui.log.lastElementChild.remove();
}

let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    const r = ui.readouts;
    const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);
    const seconds = (v) => `${v.toFixed(2)} s`;
    r.ttfa.textContent = ms(state.ttfaMs);
    r.sound.textContent = ms(state.firstSoundMs);
    r.received.textContent = seconds(state.receivedSeconds);
    r.played.textContent = seconds(state.playedSeconds);
    const bufferedMs = state.contextRate ? (state.bufferedSamples / state.contextRate) * 1000 : null;
    r.buffered.textContent = bufferedMs !== null && bufferedMs >= 1000 ? seconds(bufferedMs / 1000) : ms(bufferedMs);
    r.frames.textContent = String(state.bufferedFrames);
    r.generation.textContent = String(state.generation);
    r.seq.textContent = state.lastSeq < 0 ? "–" : String(state.lastSeq);
    r.underruns.textContent = String(state.underruns);
    r.dropped.textContent = String(state.staleDropped);
    r.tokens.textContent = state.tokensTotal ? `${state.tokensSent} / ${state.tokensTotal}` : "–";
    r.rtt.textContent = ms(state.rttMs);
    r.audio.textContent = state.format ? `${state.format} · ${state.sampleRate} Hz` : "–";
    ui.interrupt.disabled = state.status !== "ready";
    ui.disconnect.disabled = !ws;
  });
}

// ---- wiring --------------------------------------------------------------------------------------

function restoreKey() {
  try {
    ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    // storage may be off: the key is simply not remembered
  }
}

function rememberKey() {
  try {
    if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // as above
  }
}

ui.speed.addEventListener("input", () => (ui.speedOut.textContent = `${Number(ui.speed.value).toFixed(2)}×`));
ui.speed.addEventListener("change", reconfigure);
ui.voice.addEventListener("change", reconfigure);
ui.format.addEventListener("change", reconfigure);
ui.engine.addEventListener("change", async () => {
  await loadVoices().catch((error) => setMessage(error.message, "error"));
  reconfigure();
});
ui.jitter.addEventListener("change", () => audio?.node.port.postMessage({ type: "jitter", ms: jitterMs() }));
ui.speak.addEventListener("click", speak);
ui.interrupt.addEventListener("click", interrupt);
ui.disconnect.addEventListener("click", disconnect);
ui.refreshSessions.addEventListener("click", refreshSessions);
ui.auth.addEventListener("submit", async (event) => {
  event.preventDefault();
  rememberKey();
  if (ws) ws.close(1000, "new API key");
  if (await loadChoices()) setMessage("API key accepted.", "info");
});
ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) speak();
});

restoreKey();
setStatus("disconnected");
render();
loadChoices().finally(() => {
  streamUrl();
  document.body.dataset.loaded = "true";
});

// The page: buttons, status line and messages, and the order of things in a call.
// idle -> microphone -> token -> connecting -> connected -> ended, or error from any step before connected.

import { fetchOptions, fetchToken, loadConfig, TokenError } from './api.js';
import { Call, CallFailedError, CallRefusedError } from './call.js';
import { Countdown, formatWait } from './countdown.js';
import { LevelMeters } from './meter.js';
import { Transcript } from './transcript.js';

const STATUS = {
  idle: 'Idle',
  microphone: 'Asking for the microphone…',
  token: 'Getting a token…',
  connecting: 'Connecting…',
  connected: 'Connected',
  ended: 'Call ended',
  error: 'Error',
};
const BUSY = new Set(['microphone', 'token', 'connecting', 'connected']);
// An `error` event this close before the peer goes away is why it went away.
const SESSION_ERROR_WINDOW_MS = 5000;
// Used when /options could not say how long a token lives; the service's default.
const DEFAULT_TOKEN_TTL_SECONDS = 60;
// A token this close to expiring may expire on the way to OpenAI.
const TOKEN_MARGIN_MS = 5000;

const $ = (id) => document.getElementById(id);
const ui = {
  app: $('app'),
  status: $('status'),
  talk: $('talk'),
  mute: $('mute'),
  reconnect: $('reconnect'),
  message: $('message'),
  countdown: $('countdown'),
  micLevel: $('mic-level'),
  assistantLevel: $('assistant-level'),
  voice: $('voice'),
  preset: $('preset'),
  allowanceLeft: $('allowance-left'),
  allowancePolicy: $('allowance-policy'),
  transcript: $('transcript'),
  transcriptEmpty: $('transcript-empty'),
  audio: $('remote-audio'),
};

const meters = new LevelMeters();
const transcript = new Transcript(ui.transcript, ui.transcriptEmpty);
const countdown = new Countdown();

let config = null;
let options = null;
let state = 'idle';
let attempt = null; // the call being set up or under way: {controller, stream, call, sessionError}
let last = { call: null, stream: null, context: null }; // kept after a call ends so tests can check the release
const timings = { clickAt: null, microphoneMs: null, tokenMs: null, connectedAt: null, clickToConnectedMs: null };
const eventLog = [];

exposeDebugHook();
init();

async function init() {
  ui.talk.addEventListener('click', () => (attempt ? hangUp() : startCall()));
  ui.reconnect.addEventListener('click', () => startCall());
  ui.mute.addEventListener('click', () => setMuted(ui.mute.getAttribute('aria-pressed') !== 'true'));
  window.addEventListener('pagehide', () => hangUp());
  setState('idle', 'loading…');
  try {
    config = await loadConfig();
  } catch (error) {
    setState('error');
    showMessage(error.message, 'error');
    return;
  }
  setState('idle', 'press Talk to start');
  if (config.optionsUrl) await loadOptions();
}

async function loadOptions() {
  try {
    options = await fetchOptions(config.optionsUrl);
  } catch (error) {
    showMessage(`The voice list could not be loaded, so the default voice will be used. (${error.message})`,
      'warning');
    return;
  }
  fillSelect(ui.voice, options.voices, options.default_voice, capitalise);
  fillSelect(ui.preset, options.presets ?? [], options.default_preset,
    (name) => capitalise(name.replace(/[-_]/g, ' ')));
  transcript.expectUserText = options.transcription !== false;
  ui.allowancePolicy.textContent = describePolicy(options.anonymous);
  ui.voice.disabled = ui.preset.disabled = BUSY.has(state);
}

// --- a call, from the click to connected ---------------------------------------------------------------------

async function startCall() {
  if (attempt || !config || countdown.active) return;
  const current = { controller: new AbortController(), stream: null, call: null, sessionError: null };
  attempt = current;
  last = { call: null, stream: null, context: null };
  timings.clickAt = performance.now();
  timings.microphoneMs = timings.tokenMs = timings.connectedAt = timings.clickToConnectedMs = null;
  meters.open(); // still inside the click: an AudioContext may only start after a user gesture
  if (document.activeElement === ui.reconnect) ui.talk.focus();
  ui.reconnect.hidden = true;
  delete ui.app.dataset.reason;
  showMessage('');
  setState('microphone');

  // Both at once: the token is usually ready by the time the person has answered the microphone prompt.
  const choice = { voice: ui.voice.value, preset: ui.preset.value };
  let mintedAt = 0;
  const microphone = requestMicrophone();
  const minting = fetchToken(config.tokenUrl, choice, current.controller.signal).then((token) => {
    mintedAt = performance.now();
    timings.tokenMs = mintedAt - timings.clickAt;
    return token;
  });
  microphone.then(() => {
    timings.microphoneMs = performance.now() - timings.clickAt;
    if (attempt === current && state === 'microphone') setState('token');
  }, () => {});
  const [mic, minted] = await Promise.allSettled([microphone, minting]);

  if (attempt !== current) {
    if (mic.status === 'fulfilled') stopTracks(mic.value); // hung up while we waited
    return;
  }
  const tokenError = minted.status === 'rejected' ? minted.reason : null;
  showAllowance(minted.status === 'fulfilled' ? minted.value.allowance : tokenError?.allowance);
  if (mic.status === 'rejected') {
    // The token is dropped unused: it expires on its own shortly, and without a microphone there is no call.
    fail(microphoneMessage(mic.reason), tokenError?.retryAfter);
    return;
  }
  current.stream = last.stream = mic.value;
  if (tokenError) {
    fail(tokenMessage(tokenError), tokenError.retryAfter);
    return;
  }
  let token = minted.value;
  if (performance.now() - mintedAt > tokenLifetimeMs() - TOKEN_MARGIN_MS) {
    // The prompt stayed open longer than a token lives (it only starts calls until it expires): get a fresh one.
    setState('token');
    try {
      token = await fetchToken(config.tokenUrl, choice, current.controller.signal);
    } catch (error) {
      if (attempt === current) fail(tokenMessage(error), error.retryAfter);
      return;
    }
    if (attempt !== current) return;
    showAllowance(token.allowance);
  }

  setState('connecting');
  meters.watch('mic', current.stream, ui.micLevel);
  ui.mute.disabled = false;
  const call = new Call({
    onRemoteStream: (stream) => {
      if (attempt !== current) return;
      ui.audio.srcObject = stream;
      meters.watch('assistant', stream, ui.assistantLevel);
    },
    onServerEvent: (event) => onServerEvent(current, event),
    onDropped: () => onDropped(current),
  });
  current.call = last.call = call;
  try {
    await call.connect({
      stream: current.stream,
      token: token.token,
      realtimeUrl: token.realtimeUrl,
      signal: current.controller.signal,
    });
  } catch (error) {
    if (attempt === current) fail(callMessage(error));
    return;
  }
  if (attempt !== current) return;
  timings.connectedAt = performance.now();
  timings.clickToConnectedMs = timings.connectedAt - timings.clickAt;
  if (!transcript.isEmpty) transcript.note('New call');
  setState('connected', 'speak whenever you like');
}

// Measured on this clock from when the token arrived, so a wrong clock on this computer does not matter.
function tokenLifetimeMs() {
  const seconds = Number(options?.token_ttl_seconds);
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_TOKEN_TTL_SECONDS) * 1000;
}

function requestMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    const error = new Error('getUserMedia is not available');
    error.name = 'NotSupportedError';
    return Promise.reject(error);
  }
  return navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: false,
  });
}

// --- during and after a call ---------------------------------------------------------------------------------

function onServerEvent(current, event) {
  if (attempt !== current) return;
  eventLog.push(event.type);
  if (eventLog.length > 1000) eventLog.shift();
  if (event.type === 'error') {
    const message = event.error?.message || 'an unknown error';
    current.sessionError = { message, at: performance.now() };
    showMessage(`OpenAI reported: ${message}`, 'warning');
  }
  transcript.handle(event);
}

function onDropped(current) {
  if (attempt !== current) return;
  attempt = null;
  release(current);
  const error = current.sessionError;
  const recent = error && performance.now() - error.at < SESSION_ERROR_WINDOW_MS;
  ui.app.dataset.reason = recent ? 'session-ended' : 'dropped';
  setState('ended', 'the connection dropped');
  showMessage(recent
    ? `The connection dropped: OpenAI ended the session (“${error.message}”). Press Reconnect to start a new call.`
    : 'The connection dropped. Press Reconnect to call again.', 'error');
  transcript.note(recent ? 'Session ended by OpenAI' : 'Connection dropped');
  ui.reconnect.hidden = false;
}

function hangUp() {
  const current = attempt;
  if (!current) return;
  attempt = null;
  const wasConnected = state === 'connected';
  release(current);
  ui.app.dataset.reason = 'hung-up';
  setState('ended', wasConnected ? 'press Talk to call again' : 'cancelled');
  if (wasConnected) transcript.note('Call ended');
}

function fail(message, retryAfter = null) {
  const current = attempt;
  attempt = null;
  if (current) release(current);
  ui.app.dataset.reason = 'error';
  setState('error');
  showMessage(message, 'error');
  if (retryAfter) startWait(retryAfter);
}

// Everything a call holds is let go here: the microphone, the connection, the meters and the audio element.
function release(current) {
  current.controller.abort();
  current.call?.close();
  transcript.endCall();
  if (current.stream) stopTracks(current.stream);
  last.context = meters.stop();
  ui.audio.srcObject = null;
  ui.mute.setAttribute('aria-pressed', 'false');
  ui.mute.disabled = true;
}

function stopTracks(stream) {
  for (const track of stream.getTracks()) track.stop();
}

function setMuted(muted) {
  ui.mute.setAttribute('aria-pressed', String(muted));
  for (const track of attempt?.stream?.getAudioTracks() ?? []) track.enabled = !muted;
  if (state === 'connected') setState('connected', muted ? 'your microphone is muted' : 'speak whenever you like');
}

// --- waiting out a Retry-After -------------------------------------------------------------------------------

function startWait(seconds) {
  ui.countdown.hidden = false;
  countdown.start(seconds, (left) => {
    ui.countdown.textContent = `You can try again in ${formatWait(left)}.`;
    ui.countdown.dataset.secondsLeft = String(left);
    ui.talk.disabled = true;
  }, () => {
    ui.countdown.hidden = true;
    ui.countdown.textContent = '';
    ui.countdown.dataset.secondsLeft = '0';
    if (!attempt) {
      setState('idle', 'press Talk to start');
      showMessage('You can call again now.', 'info');
    }
  });
}

// --- what the page says --------------------------------------------------------------------------------------

function setState(next, detail = '') {
  state = next;
  const busy = BUSY.has(next);
  ui.app.dataset.state = next;
  ui.status.dataset.state = next;
  ui.status.textContent = detail ? `${STATUS[next]} — ${detail}` : STATUS[next];
  ui.talk.textContent = busy ? 'Hang up' : 'Talk';
  ui.talk.dataset.action = busy ? 'hangup' : 'talk';
  ui.talk.disabled = !config || (!busy && countdown.active);
  ui.voice.disabled = ui.preset.disabled = busy || !options;
}

function showMessage(text, kind = 'info') {
  ui.message.textContent = text;
  ui.message.dataset.kind = text ? kind : '';
}

function showAllowance(allowance) {
  if (!allowance) return;
  const of = allowance.limit != null ? ` of ${allowance.limit}` : '';
  ui.allowanceLeft.textContent = `Calls left right now: ${allowance.remaining}${of}.`;
  ui.allowanceLeft.dataset.remaining = String(allowance.remaining);
}

function describePolicy(anonymous) {
  if (!anonymous) return '';
  if (!anonymous.enabled) return 'Calls without an API key are switched off on this site.';
  const burst = Number(anonymous.burst);
  const rate = Number(anonymous.rate_per_hour);
  const calls = `${burst} call${burst === 1 ? '' : 's'}`;
  return `Each visitor may start ${calls} in a row, then ${rate} more per hour.`;
}

function microphoneMessage(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone access was denied. Allow the microphone for this site (see the icon in the address bar), '
        + 'then press Talk again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one, then press Talk again.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone could not be started. Another app may be using it.';
    case 'NotSupportedError':
      return 'This browser cannot use a microphone on this page (it needs a secure https address).';
    default:
      return `The microphone could not be used (${error?.name ?? 'unknown error'}).`;
  }
}

function tokenMessage(error) {
  if (!(error instanceof TokenError)) return 'Something went wrong while getting a token. Please try again.';
  switch (error.kind) {
    case 'network':
      return 'The token service could not be reached. Check your connection and try again.';
    case 'rate-limited':
      return error.code === 'daily_budget_exhausted'
        ? 'This site has used up its calls for today.'
        : 'You have started too many calls for now.';
    case 'forbidden':
      return `This page may not use the token service: ${error.message}`;
    case 'server':
      return `The token service is not working right now: ${error.message}`;
    default:
      return `The token service refused: ${error.message}`;
  }
}

function callMessage(error) {
  if (error instanceof CallRefusedError) return `OpenAI refused the call: ${error.message}`;
  if (error instanceof CallFailedError) return error.message;
  return `The call could not be set up: ${error?.message ?? error}`;
}

function fillSelect(select, values, preferred, label) {
  select.replaceChildren(...values.map((value) => {
    const option = new Option(label(value), value);
    option.selected = value === preferred;
    return option;
  }));
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// --- for tests and for debugging in the console --------------------------------------------------------------

function exposeDebugHook() {
  const hook = {
    get state() { return state; },
    get pc() { return (attempt?.call ?? last.call)?.peerConnection ?? null; },
    get channel() { return (attempt?.call ?? last.call)?.dataChannel ?? null; },
    get stream() { return attempt?.stream ?? last.stream; },
    get audioContext() { return meters.context ?? last.context; },
    get metersRunning() { return meters.running; },
    get events() { return [...eventLog]; },
    get timings() { return { ...timings }; },
  };
  Object.defineProperty(window, '__voice', { value: Object.freeze(hook) });
}

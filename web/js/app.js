// The page: buttons, status line and messages, and the order of things in a call.
// idle -> microphone -> connecting -> connected -> ended, or error from any step before connected.
//
// The call service sets up every call (POST /calls) and ends it at the owner's time limit; this page makes the
// offer, shows how much time is left, and tells a call ended at the limit (no reconnect) from one that ended before
// it (Reconnect offered: a new call). It never holds an OpenAI token.
//
// Neither backend tells the page why a call ended (GPT-Live's session.closed carries the owner's instructions, so
// the service never lets it through; Realtime has no such event, and on an audio-only call no events at all). The
// page knows it from what it saw: its own hangup, the call's time limit, the other side closing the connection, or
// the connection failing.
//
// Who calls: anonymous callers post to POST /calls, with a human check's token when the owner asks for one
// (GET /options names Cloudflare Turnstile: turnstile.js). A site whose users sign in defines, in a script of its own
// before this module (the page's CSP runs no inline script):
//   window.talkUserToken = async () => '<a fresh JWT from your identity provider>';
// and, where GET /options says user_calls, every call goes to POST /user/calls with that token as its bearer, and
// no human check.

import { fetchOptions, hangUpCall, loadConfig, ServiceError, startCall as placeCall } from './api.js';
import { Call, CallFailedError, CLEAN_CLOSES } from './call.js';
import { Countdown, formatClock, formatWait } from './countdown.js';
import { LevelMeters } from './meter.js';
import { Transcript } from './transcript.js';
import { HumanCheck, HumanCheckError } from './turnstile.js';

const STATUS = {
  idle: 'Idle',
  microphone: 'Asking for the microphone…',
  connecting: 'Connecting…',
  connected: 'Connected',
  ended: 'Call ended',
  error: 'Error',
};
const BUSY = new Set(['microphone', 'connecting', 'connected']);
// An `error` event this close before the peer goes away is why it went away.
const SESSION_ERROR_WINDOW_MS = 5000;
// The page's clock for a call starts when the answer arrives, a little after the server's (which starts when
// OpenAI answered it, and is kept in whole seconds), so the server's hangup may come up to a second or two before
// this page reaches zero. An end this close to the limit is the limit, not a dropped connection.
const LIMIT_TOLERANCE_MS = 3000;
// If the server has not ended the call this long after the limit, the page hangs up itself.
const LIMIT_GRACE_MS = 10000;
const WARN_AT_SECONDS = 30;
const NO_TRANSCRIPT_NOTE = 'Calls on this site are voice only: no transcript is shown.';

const $ = (id) => document.getElementById(id);
const ui = {
  app: $('app'),
  status: $('status'),
  talk: $('talk'),
  mute: $('mute'),
  reconnect: $('reconnect'),
  message: $('message'),
  countdown: $('countdown'),
  timeLeft: $('time-left'),
  usage: $('usage'),
  micLevel: $('mic-level'),
  assistantLevel: $('assistant-level'),
  voice: $('voice'),
  preset: $('preset'),
  allowanceLeft: $('allowance-left'),
  allowancePolicy: $('allowance-policy'),
  transcript: $('transcript'),
  transcriptEmpty: $('transcript-empty'),
  audio: $('remote-audio'),
  humanCheck: $('human-check'),
};

const TRANSCRIPT_NOTE = ui.transcriptEmpty.textContent; // the page's own words, for calls that have transcripts
const meters = new LevelMeters();
const transcript = new Transcript(ui.transcript, ui.transcriptEmpty);
const wait = new Countdown(); // a Retry-After being waited out
const clock = new Countdown(); // the time left in the call under way

let config = null;
let options = null;
let humanCheck = null; // the owner's human check for anonymous calls, when GET /options names one
let state = 'idle';
// The call being set up or under way: {controller, stream, call, placed, deadline, sessionError, serverEnded,
// graceTimer}. `placed` is the service's answer (call id, hangup token, limit) once it has come.
let attempt = null;

init();

async function init() {
  ui.talk.addEventListener('click', () => (attempt ? hangUp() : startCall()));
  ui.reconnect.addEventListener('click', () => startCall());
  ui.mute.addEventListener('click', () => setMuted(ui.mute.getAttribute('aria-pressed') !== 'true'));
  // Closing the tab ends the call at once (keepalive) instead of leaving it to run to its limit.
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
  showTranscriptNote();
}

async function loadOptions() {
  try {
    options = await fetchOptions(config.optionsUrl);
  } catch (error) {
    showMessage(`The voice list could not be loaded, so the default voice will be used and the call will be voice `
      + `only. (${error.message})`, 'warning');
    return;
  }
  fillSelect(ui.voice, options.voices, options.default_voice, capitalise);
  fillSelect(ui.preset, options.presets ?? [], options.default_preset,
    (name) => capitalise(name.replace(/[-_]/g, ' ')));
  transcript.expectUserText = options.transcription !== false;
  ui.app.dataset.backend = options.backend === 'live' ? 'live' : 'realtime';
  if (signedIn()) {
    ui.app.dataset.caller = 'user';
  } else if (HumanCheck.usable(options.turnstile)) {
    humanCheck = new HumanCheck(options.turnstile, ui.humanCheck, (check) => { ui.humanCheck.dataset.state = check; });
    humanCheck.start().catch(() => {}); // a widget that cannot load is reported when Talk is pressed
  }
  ui.allowancePolicy.textContent = describePolicy(options);
  ui.voice.disabled = ui.preset.disabled = BUSY.has(state);
}

// Whether calls carry the `oai-events` channel (transcripts, usage). A service that does not allow it answers any
// other offer with a 400, so unknown options mean audio only, which every service takes; a service from before the
// field existed allowed the channel.
function withEvents() {
  return options !== null && options.data_channel !== false;
}

// A signed-in user: the site defines talkUserToken and the service takes signed-in users' calls.
function signedIn() {
  return typeof globalThis.talkUserToken === 'function' && options?.user_calls === true;
}

function showTranscriptNote() {
  ui.transcriptEmpty.textContent = withEvents() ? TRANSCRIPT_NOTE : NO_TRANSCRIPT_NOTE;
}

// --- a call, from the click to connected ---------------------------------------------------------------------

async function startCall() {
  if (attempt || !config || wait.active) return;
  const current = {
    controller: new AbortController(), stream: null, call: null, placed: null, deadline: 0, sessionError: null,
    serverEnded: false, graceTimer: 0,
  };
  attempt = current;
  meters.open(); // still inside the click: an AudioContext may only start after a user gesture
  if (document.activeElement === ui.reconnect) ui.talk.focus();
  ui.reconnect.hidden = true;
  delete ui.app.dataset.reason;
  showMessage('');
  showUsage(null);
  setState('microphone');

  const call = new Call({
    onRemoteStream: (stream) => {
      if (attempt !== current) return;
      ui.audio.srcObject = stream;
      meters.watch('assistant', stream, ui.assistantLevel);
    },
    onServerEvent: (event) => onServerEvent(current, event),
    onDropped: (reason) => onDropped(current, reason),
  }, { dataChannel: withEvents() });
  current.call = call;

  // Both at once: the call is usually set up by the time the person has answered the microphone prompt. The
  // offer is started first because it is on the critical path even when the microphone is granted at once.
  const choice = { voice: ui.voice.value, preset: ui.preset.value };
  const placing = placeAndAnswer(current, call, choice);
  const microphone = requestMicrophone();
  microphone.then(() => {
    if (attempt === current && state === 'microphone') setState('connecting');
  }, () => {});
  const [mic, placed] = await Promise.allSettled([microphone, placing]);

  if (attempt !== current) {
    if (mic.status === 'fulfilled') stopTracks(mic.value); // hung up, or the call ended, while we waited
    return;
  }
  const serviceError = placed.status === 'rejected' ? placed.reason : null;
  // The service refused the human check's token: the widget starts on a fresh one (each is good for one try).
  if (serviceError?.code === 'turnstile_failed') humanCheck?.reset();
  showAllowance(placed.status === 'fulfilled' ? placed.value.allowance : serviceError?.allowance);
  if (mic.status === 'rejected') {
    fail(microphoneMessage(mic.reason), serviceError?.retryAfter); // release() hangs up a call already set up
    return;
  }
  current.stream = mic.value;
  if (serviceError) {
    fail(serviceMessage(serviceError), serviceError.retryAfter);
    return;
  }

  setState('connecting');
  meters.watch('mic', current.stream, ui.micLevel);
  ui.mute.disabled = false;
  try {
    await call.attachMicrophone(current.stream);
    await call.ready(current.controller.signal);
  } catch (error) {
    if (attempt === current) fail(callMessage(error));
    return;
  }
  if (attempt !== current) return;
  if (!transcript.isEmpty) transcript.note('New call');
  setState('connected', 'speak whenever you like');
}

// The offer goes to the service, and its answer (OpenAI's) into the connection. The request is not cancelled when
// the person hangs up meanwhile: a call the service set up must be hung up to give its minutes back, and only
// the answer says which call that is.
async function placeAndAnswer(current, call, choice) {
  const sdp = await call.offer();
  if (attempt !== current) throw new DOMException('The call was cancelled.', 'AbortError'); // nothing placed yet
  const caller = await callerFor(current);
  if (attempt !== current) throw new DOMException('The call was cancelled.', 'AbortError'); // nothing placed yet
  const placed = await placeCall(caller.url, sdp, choice, caller.as);
  if (attempt !== current) {
    hangUpCall(config.callsUrl, placed.callId, placed.hangupToken);
    return placed;
  }
  current.placed = placed;
  startClock(current, placed.maxSeconds);
  await call.answer(placed.sdp);
  return placed;
}

// Where the call goes and who it says it is from: a signed-in user's token, the human check's token (single use,
// taken only now), or neither.
async function callerFor(current) {
  if (signedIn()) {
    let token;
    try {
      token = await globalThis.talkUserToken();
    } catch (error) {
      throw new SignInError(`Your sign-in could not be read (${error?.message ?? error}). Sign in again, then press `
        + 'Talk.');
    }
    if (typeof token !== 'string' || !token.trim()) {
      throw new SignInError('You are not signed in. Sign in, then press Talk.');
    }
    return { url: config.userCallsUrl, as: { bearer: token.trim() } };
  }
  if (humanCheck) {
    return { url: config.callsUrl, as: { turnstileToken: await humanCheck.take(current.controller.signal) } };
  }
  return { url: config.callsUrl, as: {} };
}

class SignInError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SignInError';
  }
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

// --- the call's time limit -----------------------------------------------------------------------------------

// Counted on this page's clock from when the answer arrived, so a wrong clock on this computer does not matter.
function startClock(current, maxSeconds) {
  current.deadline = performance.now() + maxSeconds * 1000;
  let warned = false;
  ui.timeLeft.hidden = false;
  ui.timeLeft.dataset.warning = 'false';
  clock.start(maxSeconds, (left) => {
    showTimeLeft(left);
    if (left <= WARN_AT_SECONDS && !warned) {
      warned = true;
      ui.timeLeft.dataset.warning = 'true';
      showMessage(`${left} seconds left: the call ends at its ${limitName(maxSeconds)} limit.`, 'warning');
    }
  }, () => {
    showTimeLeft(0);
    // The server ends the call now; should it not, the page does not outstay the limit either.
    current.graceTimer = setTimeout(() => {
      if (attempt === current) endCall(current);
    }, LIMIT_GRACE_MS);
  });
}

function showTimeLeft(seconds) {
  ui.timeLeft.textContent = `Time left: ${formatClock(seconds)}`;
  ui.timeLeft.dataset.secondsLeft = String(seconds);
}

function limitReached(current) {
  return current.deadline > 0 && performance.now() >= current.deadline - LIMIT_TOLERANCE_MS;
}

// "5-minute", or "20-second" for limits under a minute or not in whole minutes.
function limitName(seconds) {
  return seconds >= 60 && seconds % 60 === 0 ? `${seconds / 60}-minute` : `${seconds}-second`;
}

// --- during and after a call ---------------------------------------------------------------------------------

function onServerEvent(current, event) {
  if (attempt !== current) return;
  switch (event.type) {
    case 'error': {
      const message = event.error?.message || 'an unknown error';
      current.sessionError = { message, at: performance.now() };
      showMessage(`OpenAI reported: ${message}`, 'warning');
      break;
    }
    case 'session.usage.updated':
      showUsage(event.usage?.seconds);
      break;
    default:
      break;
  }
  transcript.handle(event);
}

// The connection went without this side asking: the limit, the other side closing it, or a failure. `how` is the
// Call's reason ('dtls-closed', 'channel-closed', 'ice-failed', ...), or null when the page gave up waiting for the
// server's hangup at the limit.
function onDropped(current, how) {
  if (attempt !== current) return;
  endCall(current, how);
}

function endCall(current, how = null) {
  attempt = null;
  const atLimit = limitReached(current);
  // At the limit the server has hung up already. Before it, the hangup tells the service the call is over (if it
  // still runs at OpenAI, it ends; if not, only its unused minutes go back).
  current.serverEnded = atLimit;
  release(current);
  if (atLimit) {
    const sentence = `Call ended: the ${limitName(current.placed.maxSeconds)} limit was reached`;
    ui.app.dataset.reason = 'limit';
    setState('ended', 'time limit reached');
    showMessage(sentence, 'info');
    transcript.note(sentence);
    return;
  }
  ui.reconnect.hidden = false;
  const error = current.sessionError;
  if (error && performance.now() - error.at < SESSION_ERROR_WINDOW_MS) {
    ui.app.dataset.reason = 'session-ended';
    setState('ended', 'the connection dropped');
    showMessage(`The connection dropped: OpenAI ended the session (“${error.message}”). `
      + 'Press Reconnect to start a new call.', 'error');
    transcript.note('Session ended by OpenAI');
    return;
  }
  if (CLEAN_CLOSES.has(how)) {
    ui.app.dataset.reason = 'closed';
    setState('ended', 'closed by OpenAI');
    showMessage('Call ended: OpenAI closed the call before its time was up. Press Reconnect to start a new call.',
      'error');
    transcript.note('Call closed by OpenAI');
    return;
  }
  ui.app.dataset.reason = 'dropped';
  setState('ended', 'the connection dropped');
  showMessage('The connection dropped. Press Reconnect to call again.', 'error');
  transcript.note('Connection dropped');
}

function hangUp() {
  const current = attempt;
  if (!current) return;
  attempt = null;
  const wasConnected = state === 'connected';
  release(current);
  ui.app.dataset.reason = 'hung-up';
  setState('ended', wasConnected ? 'press Talk to call again' : 'cancelled');
  showMessage('');  // what was said about the call (its time warning) is over with it
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

// Everything a call holds is let go here: the call at the service, the microphone, the connection, the meters,
// the clock and the audio element.
function release(current) {
  current.controller.abort();
  clearTimeout(current.graceTimer);
  clock.cancel();
  ui.timeLeft.hidden = true;
  if (current.placed && !current.serverEnded) {
    hangUpCall(config.callsUrl, current.placed.callId, current.placed.hangupToken);
  }
  current.call?.close();
  transcript.endCall();
  if (current.stream) stopTracks(current.stream);
  meters.stop();
  ui.audio.srcObject = null;
  ui.mute.setAttribute('aria-pressed', 'false');
  ui.mute.disabled = true;
}

function stopTracks(stream) {
  for (const track of stream.getTracks()) track.stop();
}

// The track is switched off here, not on the server: muting needs no client event (a GPT-Live session may refuse
// them all), and nothing is sent while muted.
function setMuted(muted) {
  ui.mute.setAttribute('aria-pressed', String(muted));
  for (const track of attempt?.stream?.getAudioTracks() ?? []) track.enabled = !muted;
  if (state === 'connected') setState('connected', muted ? 'your microphone is muted' : 'speak whenever you like');
}

// --- waiting out a Retry-After -------------------------------------------------------------------------------

function startWait(seconds) {
  ui.countdown.hidden = false;
  wait.start(seconds, (left) => {
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
  ui.talk.disabled = !config || (!busy && wait.active);
  ui.voice.disabled = ui.preset.disabled = busy || !options;
}

function showMessage(text, kind = 'info') {
  ui.message.textContent = text;
  ui.message.dataset.kind = text ? kind : '';
}

// GPT-Live reports the session's length so far (cumulative seconds, billed per minute); null hides it.
function showUsage(seconds) {
  const value = Number(seconds);
  if (seconds == null || !Number.isFinite(value)) {
    if (seconds === null) {
      ui.usage.hidden = true;
      ui.usage.textContent = '';
      ui.usage.dataset.seconds = '';
    }
    return;
  }
  ui.usage.hidden = false;
  ui.usage.textContent = `Minutes used: ${(value / 60).toFixed(1)}`;
  ui.usage.dataset.seconds = String(value);
}

function showAllowance(allowance) {
  if (!allowance) return;
  const of = allowance.limit != null ? ` of ${allowance.limit}` : '';
  ui.allowanceLeft.textContent = `Calls left right now: ${allowance.remaining}${of}.`;
  ui.allowanceLeft.dataset.remaining = String(allowance.remaining);
}

function describePolicy(policy) {
  const parts = [];
  const maxSeconds = Number(policy.max_call_seconds);
  if (maxSeconds > 0) {
    parts.push(`Each call lasts at most ${maxSeconds < 60 || maxSeconds % 60 ? `${maxSeconds} seconds`
      : `${maxSeconds / 60} minute${maxSeconds === 60 ? '' : 's'}`}.`);
  }
  const anonymous = policy.anonymous;
  if (signedIn()) {
    parts.push('You call as a signed-in user.');
  } else if (anonymous && !anonymous.enabled) {
    parts.push('Calls without an API key are switched off on this site.');
  } else if (anonymous) {
    const burst = Number(anonymous.burst);
    const rate = Number(anonymous.rate_per_hour);
    parts.push(`Each visitor may start ${burst} call${burst === 1 ? '' : 's'} in a row, then ${rate} more per hour.`);
    if (humanCheck) parts.push('A call may ask for a quick human check first.');
  }
  return parts.join(' ');
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

function serviceMessage(error) {
  if (error instanceof HumanCheckError || error instanceof SignInError) return error.message;
  if (!(error instanceof ServiceError)) {
    return error instanceof CallFailedError ? error.message : 'Something went wrong while setting up the call.';
  }
  switch (error.kind) {
    case 'network':
      return 'The call service could not be reached. Check your connection and try again.';
    case 'rate-limited':
      return error.code === 'daily_budget_exhausted'
        ? 'This site has used up its call minutes for today.'
        : 'You have started too many calls for now.';
    case 'unauthorised':
      return signedIn() ? `Your sign-in was not accepted: ${error.message}`
        : `This site does not take calls from this page: ${error.message}`;
    case 'forbidden':
      if (error.code === 'turnstile_failed') {
        return `The human check was not accepted (${error.message}). It starts again below the Talk button: `
          + 'press Talk once it is done.';
      }
      return `This page may not use the call service: ${error.message}`;
    case 'server':
      return error.code === 'leash_unavailable'
        ? 'The call could not be given its time limit, so it was ended before it began. Try again in a moment.'
        : `The call service is not working right now: ${error.message}`;
    default:
      return `The call service refused: ${error.message}`;
  }
}

function callMessage(error) {
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

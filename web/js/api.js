// The call service: where it is (config.json), what it offers (GET /options), a call set up for us (POST /calls)
// and a call hung up early (POST /calls/{id}/hangup). The service talks to OpenAI; this page never holds an OpenAI
// token. Every failure becomes a ServiceError whose `kind` says what the page should tell the caller.

export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

export class ServiceError extends Error {
  // kind: 'network' (no answer), 'rate-limited' (429), 'forbidden' (403), 'unauthorised' (401), 'server' (5xx),
  // 'refused' (other 4xx), 'bad-response' (an answer that is not what the API promises).
  constructor({ kind, message, status = 0, code = '', retryAfter = null, allowance = null }) {
    super(message);
    this.name = 'ServiceError';
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // whole seconds, or null when the server gave no Retry-After
    this.allowance = allowance;
  }
}

export async function loadConfig(url = 'config.json') {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
  } catch {
    throw new ConfigError('The page could not load its settings (config.json). Reload to try again.');
  }
  if (!response.ok) {
    throw new ConfigError(`The page is not set up: config.json answered HTTP ${response.status}.`);
  }
  const config = await response.json().catch(() => null);
  // callsUrl and optionsUrl are written by the deployer; apiUrl alone is enough to find both.
  const api = typeof config?.apiUrl === 'string' && config.apiUrl ? config.apiUrl.replace(/\/*$/, '/') : null;
  const callsUrl = stringOr(config?.callsUrl, api && `${api}calls`);
  if (!callsUrl) {
    throw new ConfigError('The page is not set up: config.json has no callsUrl.');
  }
  return {
    callsUrl,
    optionsUrl: stringOr(config?.optionsUrl, api && `${api}options`),
    // Signed-in users' calls (POST /user/calls): next to POST /calls.
    userCallsUrl: stringOr(config?.userCallsUrl,
      api ? `${api}user/calls` : callsUrl.replace(/\/calls$/, '/user/calls')),
  };
}

function stringOr(value, fallback) {
  return typeof value === 'string' && value ? value : fallback || null;
}

export async function fetchOptions(optionsUrl) {
  let response;
  try {
    response = await fetch(optionsUrl, { credentials: 'omit' });
  } catch {
    throw new ServiceError({ kind: 'network', message: 'The call service could not be reached.' });
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  const options = await response.json().catch(() => null);
  if (!options || !Array.isArray(options.voices)) {
    throw new ServiceError({ kind: 'bad-response', status: response.status, message: 'The options were unreadable.' });
  }
  return options;
}

// Posts our SDP offer; the service sets the call up with OpenAI under the owner's policy and time limit and answers
// with OpenAI's SDP answer. `choice` is {voice, preset}; empty values are left out so the server's defaults apply.
// The last argument says who calls: {bearer} a signed-in user (their identity provider's token, for POST
// /user/calls), or {turnstileToken} an anonymous caller who passed the owner's human check.
export async function startCall(callsUrl, sdp, choice, { signal, bearer, turnstileToken } = {}) {
  const body = { sdp };
  if (choice.voice) body.voice = choice.voice;
  if (choice.preset) body.preset = choice.preset;
  if (turnstileToken) body.turnstile_token = turnstileToken;
  const headers = { 'Content-Type': 'application/json' };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let response;
  try {
    response = await fetch(callsUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ServiceError({
      kind: 'network',
      message: 'The call service could not be reached. Check your connection and try again.',
    });
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  const data = await response.json().catch(() => null);
  if (!data || typeof data.call_id !== 'string' || typeof data.sdp !== 'string'
      || typeof data.hangup_token !== 'string' || !(Number(data.max_seconds) > 0)) {
    throw new ServiceError({
      kind: 'bad-response',
      status: response.status,
      message: 'The call service gave an answer this page does not understand.',
    });
  }
  return {
    callId: data.call_id,
    sdp: data.sdp,
    maxSeconds: Number(data.max_seconds),
    hangupToken: data.hangup_token,
    session: data.session ?? {},
    allowance: allowanceFrom(response.headers),
  };
}

// Fire and forget: keepalive lets the request outlive the page (a closed tab still ends the call and gives the
// unused minutes back). If it is lost anyway, the server's own time limit still ends the call.
export function hangUpCall(callsUrl, callId, hangupToken) {
  try {
    fetch(`${callsUrl}/${encodeURIComponent(callId)}/hangup`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ hangup_token: hangupToken }),
      credentials: 'omit',
      keepalive: true,
    }).catch(() => {});
  } catch {
    // A page being torn down may refuse new requests; nothing more can be done from here.
  }
}

async function errorFrom(response) {
  // The API answers {"error": {"code", "message"}}; a gateway in front of it may answer anything.
  const data = await response.json().catch(() => null);
  const code = typeof data?.error?.code === 'string' ? data.error.code : '';
  const serverMessage = typeof data?.error?.message === 'string' ? data.error.message : '';
  const status = response.status;
  const retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
  const allowance = allowanceFrom(response.headers);
  let kind = 'refused';
  if (status === 429) kind = 'rate-limited';
  else if (status === 403) kind = 'forbidden';
  else if (status === 401) kind = 'unauthorised';
  else if (status >= 500) kind = 'server';
  const message = serverMessage || `The call service answered HTTP ${status}.`;
  return new ServiceError({ kind, status, code, message, retryAfter, allowance });
}

// Retry-After is delay-seconds or an HTTP date (RFC 9110); this API sends seconds, a proxy might send a date.
export function parseRetryAfter(value) {
  if (value == null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function allowanceFrom(headers) {
  const remaining = headers.get('RateLimit-Remaining');
  if (remaining == null || !/^\d+$/.test(remaining.trim())) return null;
  const limit = headers.get('RateLimit-Limit');
  const reset = headers.get('RateLimit-Reset');
  return {
    remaining: Number(remaining),
    limit: limit != null && /^\d+$/.test(limit.trim()) ? Number(limit) : null,
    resetSeconds: reset != null && /^\d+$/.test(reset.trim()) ? Number(reset) : null,
  };
}

// The token service: where it is (config.json), what it offers (/options) and a token for one call (/token).
// Every failure becomes a TokenError whose `kind` says what the page should tell the caller.

export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

export class TokenError extends Error {
  // kind: 'network' (no answer), 'rate-limited' (429), 'forbidden' (403), 'server' (5xx), 'refused' (other 4xx),
  // 'bad-response' (an answer that is not what the API promises).
  constructor({ kind, message, status = 0, code = '', retryAfter = null, allowance = null }) {
    super(message);
    this.name = 'TokenError';
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
  if (!config || typeof config.tokenUrl !== 'string' || !config.tokenUrl) {
    throw new ConfigError('The page is not set up: config.json has no tokenUrl.');
  }
  return {
    tokenUrl: config.tokenUrl,
    optionsUrl: typeof config.optionsUrl === 'string' && config.optionsUrl ? config.optionsUrl : null,
  };
}

export async function fetchOptions(optionsUrl) {
  let response;
  try {
    response = await fetch(optionsUrl, { credentials: 'omit' });
  } catch {
    throw new TokenError({ kind: 'network', message: 'The token service could not be reached.' });
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  const options = await response.json().catch(() => null);
  if (!options || !Array.isArray(options.voices)) {
    throw new TokenError({ kind: 'bad-response', status: response.status, message: 'The options were unreadable.' });
  }
  return options;
}

// `choice` is {voice, preset}; empty values are left out so the server applies its defaults.
export async function fetchToken(tokenUrl, choice, signal) {
  const body = {};
  if (choice.voice) body.voice = choice.voice;
  if (choice.preset) body.preset = choice.preset;
  let response;
  try {
    response = await fetch(tokenUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new TokenError({
      kind: 'network',
      message: 'The token service could not be reached. Check your connection and try again.',
    });
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  const data = await response.json().catch(() => null);
  if (!data || typeof data.token !== 'string' || typeof data.realtime_url !== 'string') {
    throw new TokenError({
      kind: 'bad-response',
      status: response.status,
      message: 'The token service gave an answer this page does not understand.',
    });
  }
  return {
    token: data.token,
    expiresAt: data.expires_at,
    realtimeUrl: data.realtime_url,
    session: data.session ?? {},
    allowance: allowanceFrom(response.headers),
  };
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
  else if (status >= 500) kind = 'server';
  const message = serverMessage || `The token service answered HTTP ${status}.`;
  return new TokenError({ kind, status, code, message, retryAfter, allowance });
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

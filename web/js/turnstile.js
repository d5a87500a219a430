// The human check the owner may ask of anonymous callers (Cloudflare Turnstile). Loaded only when GET /options
// names it: its script comes from options.turnstile.script_url (the page's CSP allows that origin only then), and
// its widget sits next to the Talk button. Each call takes the latest token, which is good for one verification, so
// the widget is reset to solve a fresh one at once.

const LOAD_TIMEOUT_MS = 20000;
// How long a press of Talk waits for a widget still solving its challenge.
const TOKEN_TIMEOUT_MS = 30000;

export class HumanCheckError extends Error {
  constructor(message) {
    super(message);
    this.name = 'HumanCheckError';
  }
}

export class HumanCheck {
  // `settings` is options.turnstile: {site_key, script_url, action}; `container` the element the widget goes in;
  // `onChange(state)` hears 'solving', 'ready', 'expired' or 'error'.
  constructor(settings, container, onChange = () => {}) {
    this.settings = settings;
    this.container = container;
    this.onChange = onChange;
    this.widgetId = null;
    this.current = null; // the latest token, not yet used
    this.failure = null; // the widget's error code, until it solves again
    this.waiters = [];
    this.loaded = null;
  }

  static usable(settings) {
    return Boolean(settings && typeof settings.site_key === 'string' && settings.site_key
      && typeof settings.script_url === 'string' && /^https?:\/\/[^/\s]+\/\S*$/.test(settings.script_url));
  }

  // Loads the script and renders the widget; a failure is kept for take() to report when Talk is pressed.
  start() {
    this.loaded ??= this.render();
    this.loaded.catch(() => this.onChange('error'));
    return this.loaded;
  }

  async render() {
    const turnstile = await loadScript(this.settings.script_url);
    this.container.hidden = false;
    this.onChange('solving');
    this.widgetId = turnstile.render(this.container, {
      sitekey: this.settings.site_key,
      action: typeof this.settings.action === 'string' && this.settings.action ? this.settings.action : undefined,
      callback: (token) => this.solved(token),
      'error-callback': (code) => this.failed(code),
      'expired-callback': () => this.expired(),
      'refresh-expired': 'auto',
    });
  }

  // The latest token, for one call: the widget starts on the next one at once. Waits while a challenge is being
  // solved; throws HumanCheckError when the widget failed or took too long, or `signal` aborted.
  async take(signal) {
    await this.start();
    if (!this.current) {
      if (this.failure) this.reset();
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new HumanCheckError(
          'The human check is taking too long. Complete it (below the Talk button), then press Talk again.')),
        TOKEN_TIMEOUT_MS);
        const done = (error) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', aborted);
          this.waiters = this.waiters.filter((w) => w !== done);
          if (error) reject(error); else resolve();
        };
        const aborted = () => done(new DOMException('The call was cancelled.', 'AbortError'));
        signal?.addEventListener('abort', aborted);
        this.waiters.push(done);
      });
    }
    const token = this.current;
    this.reset();
    return token;
  }

  // A fresh challenge: after every use, and after the service refused a token.
  reset() {
    this.current = null;
    this.failure = null;
    if (this.widgetId !== null) {
      this.onChange('solving');
      window.turnstile.reset(this.widgetId);
    }
  }

  solved(token) {
    this.current = token;
    this.failure = null;
    this.onChange('ready');
    for (const done of [...this.waiters]) done(null);
  }

  failed(code) {
    this.current = null;
    this.failure = String(code ?? 'unknown');
    this.onChange('error');
    const error = new HumanCheckError(
      `The human check could not be completed (error ${this.failure}). Press Talk to try it again.`);
    for (const done of [...this.waiters]) done(error);
    return true; // handled: the widget need not report it itself
  }

  expired() {
    this.current = null;
    this.onChange('expired');
  }
}

// One script element per page, explicit rendering, and its onload callback as the signal it is ready.
let loading = null;

function loadScript(scriptUrl) {
  if (window.turnstile) return Promise.resolve(window.turnstile);
  loading ??= new Promise((resolve, reject) => {
    const callback = `talkTurnstileLoaded${Math.random().toString(36).slice(2)}`;
    const timer = setTimeout(() => fail(), LOAD_TIMEOUT_MS);
    const script = document.createElement('script');
    function fail() {
      clearTimeout(timer);
      delete window[callback];
      loading = null;
      script.remove();
      reject(new HumanCheckError('The human check could not be loaded. Reload the page to try again.'));
    }
    window[callback] = () => {
      clearTimeout(timer);
      delete window[callback];
      if (window.turnstile) resolve(window.turnstile); else fail();
    };
    const url = new URL(scriptUrl);
    url.searchParams.set('render', 'explicit');
    url.searchParams.set('onload', callback);
    script.src = url.href;
    script.async = true;
    script.addEventListener('error', fail);
    document.head.append(script);
  });
  return loading;
}

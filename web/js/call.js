// One WebRTC call to OpenAI Realtime: the microphone track out, the assistant's audio in, and the `oai-events`
// data channel for server events. The caller owns the microphone stream; the call only borrows its track.

const EVENTS_LABEL = 'oai-events';
const CONNECT_TIMEOUT_MS = 15000;
// ICE may report "disconnected" during a brief network wobble and recover by itself; wait this long first.
const DISCONNECT_GRACE_MS = 2000;

export class CallRefusedError extends Error {
  constructor(status, message, code = '') {
    super(message);
    this.name = 'CallRefusedError';
    this.status = status;
    this.code = code;
  }
}

export class CallFailedError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CallFailedError';
  }
}

export class Call {
  #handlers;
  #pc = null;
  #channel = null;
  #closing = false;
  #open = false;
  #ended = false;
  #disconnectTimer = 0;
  #failOpening = () => {};

  // handlers: onRemoteStream(stream), onServerEvent(event), onDropped(reason).
  // onDropped is called at most once, only for an end this side did not ask for.
  constructor(handlers) {
    this.#handlers = handlers;
  }

  get peerConnection() {
    return this.#pc;
  }

  get dataChannel() {
    return this.#channel;
  }

  async connect({ stream, token, realtimeUrl, signal }) {
    const pc = new RTCPeerConnection();
    this.#pc = pc;
    for (const track of stream.getAudioTracks()) {
      pc.addTrack(track, stream);
    }
    pc.addEventListener('track', (event) => {
      this.#handlers.onRemoteStream(event.streams[0] ?? new MediaStream([event.track]));
    });
    pc.addEventListener('connectionstatechange', () => this.#onConnectionState());

    // The channel must exist before the offer, or the offer carries no data section and OpenAI cannot send events.
    const channel = pc.createDataChannel(EVENTS_LABEL);
    this.#channel = channel;
    const opened = new Promise((resolve, reject) => {
      this.#failOpening = reject;
      channel.addEventListener('open', () => {
        this.#open = true;
        resolve();
      }, { once: true });
    });
    opened.catch(() => {}); // a failure before anyone awaits it is reported by the await below, not as unhandled
    channel.addEventListener('message', (event) => this.#onMessage(event));
    channel.addEventListener('close', () => this.#drop('channel-closed'));

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const answer = await postOffer(realtimeUrl, token, offer.sdp, signal);
    if (this.#closing) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await withTimeout(opened, CONNECT_TIMEOUT_MS, signal,
      'OpenAI did not connect in time. Your network may block WebRTC (UDP).');
  }

  close() {
    this.#closing = true;
    clearTimeout(this.#disconnectTimer);
    if (this.#channel && this.#channel.readyState !== 'closed') this.#channel.close();
    if (this.#pc && this.#pc.signalingState !== 'closed') this.#pc.close();
  }

  #onMessage(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // OpenAI only sends JSON; anything else is not ours to interpret
    }
    if (data && typeof data.type === 'string') this.#handlers.onServerEvent(data);
  }

  #onConnectionState() {
    const state = this.#pc.connectionState;
    clearTimeout(this.#disconnectTimer);
    if (state === 'failed' || state === 'closed') {
      this.#drop(`ice-${state}`);
    } else if (state === 'disconnected') {
      this.#disconnectTimer = setTimeout(() => this.#drop('ice-disconnected'), DISCONNECT_GRACE_MS);
    }
  }

  // Before the channel opens a failure belongs to connect(); after it, to onDropped.
  #drop(reason) {
    if (this.#closing || this.#ended) return;
    if (!this.#open) {
      this.#failOpening(new CallFailedError('The connection to OpenAI could not be established.'));
      return;
    }
    this.#ended = true;
    this.#handlers.onDropped(reason);
  }
}

async function postOffer(realtimeUrl, token, sdp, signal) {
  let response;
  try {
    // Exactly these two headers: any other makes the CORS preflight fail at OpenAI.
    response = await fetch(realtimeUrl, {
      method: 'POST',
      body: sdp,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' },
      credentials: 'omit',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new CallFailedError('OpenAI could not be reached. Check your connection and try again.');
  }
  if (!response.ok) {
    // An error body handed to setRemoteDescription only says "Failed to parse SessionDescription"; OpenAI's
    // own message says what went wrong.
    const data = await response.json().catch(() => null);
    const message = typeof data?.error?.message === 'string' && data.error.message
      ? data.error.message
      : `OpenAI answered HTTP ${response.status}.`;
    throw new CallRefusedError(response.status, message, data?.error?.code ?? '');
  }
  return response.text();
}

function withTimeout(promise, ms, signal, message) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new CallFailedError(message)), ms);
    const onAbort = () => reject(new DOMException('The call was cancelled.', 'AbortError'));
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
  });
}

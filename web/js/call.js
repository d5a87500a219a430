// One WebRTC call to OpenAI, set up by the call service: this side makes the offer, the service posts it to OpenAI
// and hands back the answer. The microphone track out, the assistant's audio in, and, where the service allows it
// (GET /options: data_channel), the `oai-events` data channel for server events. The caller owns the microphone
// stream; the call only borrows its track.

const EVENTS_LABEL = 'oai-events';
const CONNECT_TIMEOUT_MS = 15000;
// ICE may report "disconnected" during a brief network wobble and recover by itself; wait this long first.
const DISCONNECT_GRACE_MS = 2000;

export class CallFailedError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CallFailedError';
  }
}

// How a call that was under way ended without this side asking, as onDropped reports it. A clean close is the
// other side ending the call on purpose (its DTLS close_notify, or its closing the data channel); anything else is
// the connection failing.
export const CLEAN_CLOSES = new Set(['channel-closed', 'dtls-closed']);

export class Call {
  #handlers;
  #dataChannel;
  #pc = null;
  #channel = null;
  #transceiver = null;
  #closing = false;
  #ready = false;
  #ended = false;
  #disconnectTimer = 0;
  #becomeReady = () => {};
  #failReady = () => {};
  #readiness;

  // handlers: onRemoteStream(stream), onServerEvent(event), onDropped(reason).
  // onDropped is called at most once, only for an end this side did not ask for, and only once the call was ready.
  // dataChannel: whether the offer carries `oai-events`. Without it the service takes an offer of exactly one audio
  // section, no events ever arrive, and the call is ready when the connection is.
  constructor(handlers, { dataChannel = true } = {}) {
    this.#handlers = handlers;
    this.#dataChannel = dataChannel;
    this.#readiness = new Promise((resolve, reject) => {
      this.#becomeReady = resolve;
      this.#failReady = reject;
    });
    this.#readiness.catch(() => {}); // a failure before anyone awaits it is reported by ready(), not as unhandled
  }

  // The offer, made before there is a microphone: an audio transceiver stands in for the track, which
  // attachMicrophone() puts in later, so the offer goes out while the person still reads the permission prompt.
  async offer() {
    const pc = new RTCPeerConnection();
    this.#pc = pc;
    this.#transceiver = pc.addTransceiver('audio', { direction: 'sendrecv' });
    pc.addEventListener('track', (event) => {
      this.#handlers.onRemoteStream(event.streams[0] ?? new MediaStream([event.track]));
    });
    pc.addEventListener('connectionstatechange', () => this.#onConnectionState());

    if (this.#dataChannel) {
      // The channel must exist before the offer, or the offer carries no data section and OpenAI cannot send
      // events. Its opening is the call's start on both backends: neither says so in an event the page may see.
      const channel = pc.createDataChannel(EVENTS_LABEL);
      this.#channel = channel;
      channel.addEventListener('open', () => this.#markReady(), { once: true });
      channel.addEventListener('message', (event) => this.#onMessage(event));
      channel.addEventListener('close', () => this.#drop('channel-closed'));
    }

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    return offer.sdp;
  }

  async answer(sdp) {
    if (this.#closing) return;
    await this.#pc.setRemoteDescription({ type: 'answer', sdp });
    // A hangup at OpenAI arrives as a DTLS close_notify. With no data channel to close, nothing else tells at once:
    // the connection state stays "connected" until ICE consent runs out (about 10 s disconnected, 20 s failed).
    const transport = this.#transceiver.sender.transport;
    transport?.addEventListener('statechange', () => {
      if (transport.state === 'closed' || transport.state === 'failed') this.#drop(`dtls-${transport.state}`);
    });
  }

  // replaceTrack needs no new offer: the transceiver was negotiated to send audio from the start.
  async attachMicrophone(stream) {
    const [track] = stream.getAudioTracks();
    if (this.#closing || !track) return;
    await this.#transceiver.sender.replaceTrack(track);
  }

  // Resolves once the session can be talked to; rejects if it cannot be reached in time.
  ready(signal) {
    return withTimeout(this.#readiness, CONNECT_TIMEOUT_MS, signal,
      'OpenAI did not connect in time. Your network may block WebRTC (UDP).');
  }

  close() {
    this.#closing = true;
    clearTimeout(this.#disconnectTimer);
    if (this.#channel && this.#channel.readyState !== 'closed') this.#channel.close();
    if (this.#pc && this.#pc.signalingState !== 'closed') this.#pc.close();
  }

  #markReady() {
    if (this.#ready || this.#ended) return;
    this.#ready = true;
    this.#becomeReady();
  }

  #onMessage(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // OpenAI only sends JSON; anything else is not ours to interpret
    }
    if (!data || typeof data.type !== 'string') return;
    this.#handlers.onServerEvent(data);
  }

  #onConnectionState() {
    const state = this.#pc.connectionState;
    clearTimeout(this.#disconnectTimer);
    if (state === 'connected' && !this.#channel) {
      this.#markReady();
    } else if (state === 'failed' || state === 'closed') {
      this.#drop(`ice-${state}`);
    } else if (state === 'disconnected') {
      this.#disconnectTimer = setTimeout(() => this.#drop('ice-disconnected'), DISCONNECT_GRACE_MS);
    }
  }

  // Before the call is ready a failure belongs to ready(); after it, to onDropped.
  #drop(reason) {
    if (this.#closing || this.#ended) return;
    if (!this.#ready) {
      this.#failReady(new CallFailedError('The connection to OpenAI could not be established.'));
      return;
    }
    this.#ended = true;
    this.#handlers.onDropped(reason);
  }
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

// The conversation as text, built from server events of either backend.
// Realtime: the caller's words are kept per conversation item (item_id), the assistant's per response
// (response_id). A caller's line is opened when their speech starts, so it stays above the answer even when the
// transcription of their words arrives after the answer has begun (OpenAI transcribes in parallel with responding).
// GPT-Live: transcripts come as deltas with no item ids and no done event, so a line runs on until the other
// side speaks; then it is complete.

export class Transcript {
  #list;
  #empty;
  #turns = new Map(); // "user:<item_id>" or "assistant:<response_id>" -> {element, words, text}
  expectUserText = true; // false when the service does not transcribe the caller
  #liveTurn = null; // GPT-Live: {role, turn} of the line the latest delta went to
  #liveCount = 0; // GPT-Live: numbers its lines, which have no ids of their own

  constructor(list, emptyNote) {
    this.#list = list;
    this.#empty = emptyNote;
  }

  handle(event) {
    switch (event.type) {
      case 'input_audio_buffer.speech_started':
        this.#user(event.item_id);
        break;
      case 'conversation.item.input_audio_transcription.delta':
        this.#append(this.#user(event.item_id), event.delta);
        break;
      case 'conversation.item.input_audio_transcription.completed':
        this.#finish(this.#user(event.item_id), event.transcript, '(nothing intelligible)');
        break;
      case 'conversation.item.input_audio_transcription.failed':
        this.#finish(this.#user(event.item_id), '', '(your words could not be transcribed)');
        break;
      case 'input_audio_buffer.speech_stopped':
        if (!this.expectUserText) this.#finish(this.#user(event.item_id), '', '(you spoke)');
        break;
      case 'response.output_audio_transcript.delta':
      case 'response.output_text.delta':
        this.#append(this.#assistant(event.response_id), event.delta);
        break;
      case 'response.output_audio_transcript.done':
        this.#finish(this.#assistant(event.response_id), event.transcript, '');
        break;
      case 'response.output_text.done':
        this.#finish(this.#assistant(event.response_id), event.text, '');
        break;
      case 'response.done':
        this.#responseDone(event.response);
        break;
      case 'session.input_transcript.delta':
        this.#liveDelta('user', event.delta);
        break;
      case 'session.output_transcript.delta':
        this.#liveDelta('assistant', event.delta);
        break;
      default:
        break;
    }
  }

  // A line that is not speech: a call starting or ending.
  note(text) {
    const item = document.createElement('p');
    item.className = 'note';
    item.textContent = text;
    this.#add(item);
  }

  // A call ended: lines still waiting for words will get none, so empty ones go and partial ones stay as they are.
  endCall() {
    this.#liveTurn = null;
    for (const [key, turn] of this.#turns) {
      if (turn.element.classList.contains('pending')) {
        if (turn.text) turn.element.classList.remove('pending');
        else turn.element.remove();
      }
      this.#turns.delete(key);
    }
    if (this.isEmpty) {
      this.#list.dataset.empty = 'true';
      this.#empty.hidden = false;
    }
  }

  get isEmpty() {
    return this.#list.childElementCount === 0;
  }

  #user(itemId) {
    return this.#turn('user', itemId ?? 'unknown', 'You');
  }

  #assistant(responseId) {
    return this.#turn('assistant', responseId ?? 'unknown', 'Assistant');
  }

  #turn(role, id, label) {
    const key = `${role}:${id}`;
    let turn = this.#turns.get(key);
    if (turn) return turn;
    const element = document.createElement('div');
    element.className = `turn turn-${role} pending`;
    element.dataset.role = role;
    element.dataset.id = id;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = label;
    const words = document.createElement('p');
    words.className = 'words';
    element.append(who, words);
    turn = { element, words, text: '' };
    this.#turns.set(key, turn);
    this.#add(element);
    return turn;
  }

  #liveDelta(role, delta) {
    if (this.#liveTurn?.role !== role) {
      if (this.#liveTurn) this.#liveDone(this.#liveTurn.turn);
      this.#liveCount += 1;
      const turn = role === 'user' ? this.#user(`live-${this.#liveCount}`) : this.#assistant(`live-${this.#liveCount}`);
      this.#liveTurn = { role, turn };
    }
    this.#append(this.#liveTurn.turn, delta);
  }

  #liveDone(turn) {
    turn.element.classList.remove('pending');
    turn.element.classList.toggle('placeholder', !turn.text);
    if (!turn.text) turn.words.textContent = '(nothing intelligible)';
    for (const [key, value] of this.#turns) if (value === turn) this.#turns.delete(key);
  }

  #append(turn, delta) {
    if (typeof delta !== 'string' || !delta) return;
    turn.text += delta;
    turn.words.textContent = turn.text;
    this.#scroll();
  }

  #finish(turn, text, fallback) {
    // The final text replaces what the deltas assembled: it is authoritative, deltas may have been partial.
    turn.text = typeof text === 'string' && text.trim() ? text : turn.text;
    turn.words.textContent = turn.text || fallback;
    turn.element.classList.remove('pending');
    turn.element.classList.toggle('placeholder', !turn.text);
    this.#scroll();
  }

  #responseDone(response) {
    if (!response?.id) return;
    const turn = this.#turns.get(`assistant:${response.id}`);
    if (!turn) return;
    turn.element.classList.remove('pending');
    if (response.status === 'cancelled' || response.status === 'incomplete') {
      turn.element.classList.add('interrupted');
      turn.element.title = 'Interrupted';
    }
  }

  #add(element) {
    this.#list.append(element);
    this.#list.dataset.empty = 'false';
    this.#empty.hidden = true;
    this.#scroll();
  }

  #scroll() {
    this.#list.scrollTop = this.#list.scrollHeight;
  }
}

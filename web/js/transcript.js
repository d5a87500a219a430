// The conversation as text, built from Realtime server events.
// The caller's words are kept per conversation item (item_id), the assistant's per response (response_id).
// A caller's line is opened when their speech starts, so it stays above the answer even when the transcription
// of their words arrives after the answer has begun (OpenAI transcribes in parallel with responding).

export class Transcript {
  #list;
  #empty;
  #turns = new Map(); // "user:<item_id>" or "assistant:<response_id>" -> {element, words, text}
  expectUserText = true; // false when the service does not transcribe the caller

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

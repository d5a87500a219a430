// Live input levels for <meter> elements: one AudioContext, one AnalyserNode per stream, one animation loop.
// Each meter's value and `data-level` attribute hold the level (0..1) so people and tests read the same thing.

const FLOOR_DB = -60; // quieter than this shows as empty
const FALL_PER_FRAME = 0.9; // peaks fall back gradually so speech reads as movement, not flicker

export class LevelMeters {
  #context = null;
  #watched = new Map(); // name -> {source, analyser, samples, element, level}
  #frame = 0;

  get running() {
    return this.#frame !== 0;
  }

  get context() {
    return this.#context;
  }

  // Call from a click handler: browsers only let an AudioContext start running after a user gesture.
  open() {
    if (!this.#context || this.#context.state === 'closed') {
      this.#context = new AudioContext();
    }
    this.#context.resume().catch(() => {});
  }

  watch(name, stream, element) {
    if (!this.#context) this.open();
    this.unwatch(name);
    const source = this.#context.createMediaStreamSource(stream);
    const analyser = this.#context.createAnalyser();
    analyser.fftSize = 1024;
    // Analysis only: nothing is connected to the destination, so nothing is played twice.
    source.connect(analyser);
    this.#watched.set(name, { source, analyser, samples: new Float32Array(analyser.fftSize), element, level: 0 });
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#tick());
  }

  unwatch(name) {
    const entry = this.#watched.get(name);
    if (!entry) return;
    entry.source.disconnect();
    entry.analyser.disconnect();
    show(entry.element, 0);
    this.#watched.delete(name);
  }

  stop() {
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    for (const name of [...this.#watched.keys()]) this.unwatch(name);
    const context = this.#context;
    this.#context = null;
    if (context && context.state !== 'closed') context.close().catch(() => {});
    return context;
  }

  #tick() {
    for (const entry of this.#watched.values()) {
      entry.analyser.getFloatTimeDomainData(entry.samples);
      const target = levelOf(entry.samples);
      entry.level = Math.max(target, entry.level * FALL_PER_FRAME);
      show(entry.element, entry.level);
    }
    this.#frame = requestAnimationFrame(() => this.#tick());
  }
}

function levelOf(samples) {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / samples.length);
  if (rms <= 0) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db - FLOOR_DB) / -FLOOR_DB));
}

function show(element, level) {
  const rounded = level < 0.001 ? 0 : Math.round(level * 1000) / 1000;
  element.value = rounded;
  element.dataset.level = String(rounded);
}

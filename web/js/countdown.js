// A time counted down once a second until it is over: a wait the server asked for (Retry-After), or what is left
// of a call. Time left is worked out from a deadline, not by counting ticks, because background tabs delay timers.

export class Countdown {
  #timer = 0;
  #deadline = 0;

  get active() {
    return this.#timer !== 0;
  }

  // onTick(secondsLeft) runs now and every second while time is left; onDone() once, at the end.
  start(seconds, onTick, onDone) {
    this.cancel();
    this.#deadline = performance.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((this.#deadline - performance.now()) / 1000);
      if (left <= 0) {
        this.cancel();
        onDone();
        return;
      }
      onTick(left);
    };
    this.#timer = setInterval(tick, 250);
    tick();
  }

  cancel() {
    clearInterval(this.#timer);
    this.#timer = 0;
  }
}

export function formatWait(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = String(seconds % 60).padStart(2, '0');
  if (hours) return `${hours} h ${String(minutes).padStart(2, '0')} min`;
  return `${minutes}:${rest} min`;
}

// A call's time left as a clock reads, e.g. 4:05; an hour or more as 1:00:00.
export function formatClock(seconds) {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = String(seconds % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

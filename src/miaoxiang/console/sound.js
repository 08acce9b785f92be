// The 秒响应 sound cue, synthesised with WebAudio: no audio file to ship, cache or decode.
// A hi-lo pattern (like a fire alarm sounder), repeated while immediate alarms stay unacknowledged.

const PATTERN = [ // [frequency Hz, start s, length s]
  [988, 0.0, 0.18], [740, 0.22, 0.18], [988, 0.44, 0.18], [740, 0.66, 0.18],
];
const REPEAT_MS = 4000;

let ctx = null;
let enabled = true;
let silenced = false;
let timer = null;
let beeps = 0;
let listener = () => {};

/** Whether the cue is on, silenced for now, blocked by the browser, and how many patterns played. */
export function state() {
  return { enabled, silenced, blocked: ctx === null || ctx.state !== "running", beeps };
}

/** Called with `state()` whenever it changes. */
export function onSoundState(callback) {
  listener = callback;
}

function notify() {
  listener(state());
}

/** Create or resume the audio context; browsers allow this only inside a user gesture. */
export function unlock() {
  if (ctx === null) {
    ctx = new AudioContext();
    ctx.addEventListener("statechange", notify);
  }
  if (ctx.state !== "running") ctx.resume().then(notify, notify);
}

function playOnce() {
  if (!ctx || ctx.state !== "running" || !enabled || silenced) return;
  const t0 = ctx.currentTime + 0.02;
  for (const [freq, start, length] of PATTERN) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t0 + start);
    gain.gain.exponentialRampToValueAtTime(0.15, t0 + start + 0.01);
    gain.gain.setValueAtTime(0.15, t0 + start + length - 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + start + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + start);
    osc.stop(t0 + start + length);
  }
  beeps += 1;
  notify();
}

/**
 * Keep sounding while `pending` (unacknowledged immediate alarms) is above zero; `fresh` says a
 * new one arrived, which lifts an earlier "silence".
 */
export function alert(pending, fresh) {
  if (fresh) silenced = false;
  if (pending > 0 && timer === null) {
    playOnce();
    timer = setInterval(playOnce, REPEAT_MS);
  } else if (pending > 0 && fresh) {
    playOnce();
  } else if (pending === 0 && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}

/** Stop the current alert until a new immediate alarm arrives. */
export function silence() {
  silenced = true;
  notify();
}

/** Turn the cue on or off for this tab; while the browser still blocks audio, unblock it instead. */
export function toggle() {
  if (ctx === null || ctx.state !== "running") return unlock();
  enabled = !enabled;
  notify();
}

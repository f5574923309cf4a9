// The playback side of the demo, on the audio thread: a queue of float frames at the context's rate,
// a small jitter buffer in front of it, and a counter of samples really played.
//
// Messages in (port):
//   {type: "frame", generation, seq, data: Float32Array}   queue audio (dropped if its generation is old)
//   {type: "end", generation}                              the turn's audio is complete: play out, no gap
//   {type: "flush", generation}                            barge-in: drop every frame older than generation
//   {type: "jitter", ms}                                   the jitter buffer's depth
//   {type: "watch", generation, seq}                       say when this frame starts playing
// Messages out:
//   {type: "stats", played, buffered, frames, stale, generation, seq, playing, underruns, dropped}
//   {type: "reached", generation, seq}                     the watched frame started playing
//
// The jitter buffer: after silence, playback starts once `jitter` ms are queued, or once the first
// frame has waited that long (so a short turn is never held back). A queue that runs dry before the
// turn's end marker is an underrun: output falls silent and the jitter buffer fills again.

const REPORT_EVERY = 4; // render quanta (128 samples each) between reports while anything changes

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.queue = []; // {generation, seq, data} or {generation, end: true}
    this.head = 0; // read position in queue[0].data
    this.buffered = 0; // samples queued and not yet played
    this.minGeneration = 0;
    this.jitter = Math.round(((opts.jitterMs ?? 60) * sampleRate) / 1000);
    this.playing = false;
    this.waited = 0;
    this.played = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.generation = -1; // of the last sample played
    this.seq = -1;
    this.watch = null; // {generation, seq} of a frame the page wants to hear about
    this.sinceReport = 0;
    this.dirty = true;
    this.port.onmessage = (event) => this.command(event.data);
  }

  command(message) {
    switch (message.type) {
      case "frame":
        if (message.generation < this.minGeneration) {
          this.dropped += 1;
        } else {
          this.queue.push(message);
          this.buffered += message.data.length;
        }
        break;
      case "end":
        if (message.generation >= this.minGeneration) this.queue.push({ generation: message.generation, end: true });
        break;
      case "flush":
        this.flush(message.generation);
        break;
      case "watch":
        this.watch = { generation: message.generation, seq: message.seq };
        break;
      case "jitter":
        this.jitter = Math.round((message.ms * sampleRate) / 1000);
        break;
    }
    this.dirty = true;
  }

  flush(generation) {
    this.minGeneration = Math.max(this.minGeneration, generation);
    const kept = this.queue.filter((item) => item.generation >= this.minGeneration);
    if (kept[0] !== this.queue[0]) this.head = 0;
    this.queue = kept;
    this.buffered = kept.reduce((sum, item) => sum + (item.data ? item.data.length : 0), 0) - this.head;
    if (!this.buffered) {
      this.playing = false;
      this.waited = 0;
    }
    this.report(); // at once: the page (and its tests) see the queue emptied without waiting a quantum
  }

  report() {
    this.sinceReport = 0;
    this.dirty = false;
    let frames = 0;
    let stale = 0;
    for (const item of this.queue) {
      if (!item.data) continue;
      frames += 1;
      if (item.generation < this.minGeneration) stale += 1;
    }
    this.port.postMessage({
      type: "stats",
      played: this.played,
      buffered: this.buffered,
      frames,
      stale,
      generation: this.generation,
      seq: this.seq,
      playing: this.playing,
      underruns: this.underruns,
      dropped: this.dropped,
    });
  }

  process(inputs, outputs) {
    const output = outputs[0];
    const out = output[0];
    let written = 0;
    if (!this.playing && this.buffered > 0) {
      this.waited += out.length;
      this.playing = this.buffered >= this.jitter || this.waited >= this.jitter;
    }
    while (this.playing && written < out.length) {
      const item = this.queue[0];
      if (item === undefined) {
        this.underruns += 1; // dry before the turn's end marker
        this.playing = false;
        this.waited = 0;
        break;
      }
      if (item.end) {
        this.queue.shift();
        if (!this.queue.length) {
          this.playing = false;
          this.waited = 0;
        }
        continue;
      }
      if (this.head === 0 && this.watch && item.generation === this.watch.generation && item.seq >= this.watch.seq) {
        this.port.postMessage({ type: "reached", generation: item.generation, seq: item.seq });
        this.watch = null;
      }
      const n = Math.min(out.length - written, item.data.length - this.head);
      out.set(item.data.subarray(this.head, this.head + n), written);
      written += n;
      this.head += n;
      this.buffered -= n;
      this.played += n;
      this.generation = item.generation;
      this.seq = item.seq;
      if (this.head >= item.data.length) {
        this.queue.shift();
        this.head = 0;
      }
    }
    out.fill(0, written);
    for (let channel = 1; channel < output.length; channel++) output[channel].set(out);
    if (written) this.dirty = true;
    this.sinceReport += 1;
    if (this.dirty && this.sinceReport >= REPORT_EVERY) this.report();
    return true;
  }
}

registerProcessor("streamer-player", PlayerProcessor);

// The WebSocket to the server: opts into the protocol extensions, keeps itself alive, and
// reconnects with back-off when the line drops. Emits:
//   "open"      connected (hello sent)
//   "message"   detail: a parsed JSON message
//   "frame"     detail: an ArrayBuffer (binary point frame)
//   "closed"    detail: {retryInSeconds, everConnected}

import { FEATURES, PROTOCOL_VERSION } from "./protocol.js";

const PING_INTERVAL_MS = 20000;
const MAX_RETRY_S = 15;

export class Connection extends EventTarget {
  constructor(url, features = FEATURES) {
    super();
    this.url = url;
    this.features = features;
    this.socket = null;
    this.everConnected = false;
    this.failures = 0;
    this.pingTimer = null;
    this.retryTimer = null;
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Bytes handed to send() that have not gone out yet. */
  get bufferedAmount() {
    return this.socket ? this.socket.bufferedAmount : 0;
  }

  connect() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.everConnected = true;
      this.failures = 0;
      this.send({ type: "hello", protocol: PROTOCOL_VERSION, features: this.features });
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
      this._emit("open", null);
    });
    socket.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) {
        this._emit("frame", event.data);
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("ignoring a message that is not JSON", event.data);
        return;
      }
      this._emit("message", message, event.data.length);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      clearInterval(this.pingTimer);
      this.socket = null;
      this.failures += 1;
      const retryInSeconds = Math.min(MAX_RETRY_S, 2 ** (this.failures - 1));
      this.retryTimer = setTimeout(() => this.connect(), retryInSeconds * 1000);
      this._emit("closed", { retryInSeconds, everConnected: this.everConnected });
    });
  }

  /** Send a JSON message; false when the line is down. */
  send(message) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** Resolves once the socket's send buffer has drained below `bytes` (or it closed). */
  async drained(bytes = 0, onProgress = null) {
    while (this.isOpen && this.socket.bufferedAmount > bytes) {
      if (onProgress) onProgress(this.socket.bufferedAmount);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  }

  _emit(type, detail, size = 0) {
    const event = new CustomEvent(type, { detail });
    event.size = size;
    this.dispatchEvent(event);
  }
}

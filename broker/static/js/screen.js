// Binary screen-update frames (protocol/screen.py, docs/screen-format.md, version 1) and the
// canvas they paint. Pure of the rest of the console: tests import this module on its own.
//
// Layout (big-endian): kind u8 (1), version u8 (1), flags u8 (bit 0 keyframe), monitor u8,
// seq u32, width u16, height u16, rect count u16; then per rect x, y, w, h u16, encoding u8,
// length u32, payload. Encodings: 1 JPEG, 2 PNG, 3 raw RGB in a zlib stream (RFC 1950, what
// Python's zlib.compress writes: DecompressionStream("deflate"), not "deflate-raw").

export const FRAME_KIND_SCREEN_UPDATE = 0x01;
export const SCREEN_FORMAT_VERSION = 1;
export const FLAG_KEYFRAME = 0x01;
export const HEADER_SIZE = 14;
export const RECT_HEADER_SIZE = 13;
export const DEFAULT_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MAX_RECTS = 4096;
export const Encoding = Object.freeze({ JPEG: 1, PNG: 2, RAW_RGB_ZLIB: 3 });

const MIME = { [Encoding.JPEG]: "image/jpeg", [Encoding.PNG]: "image/png" };

/** A frame that is not valid version-1 layout; `code` is the stable code of protocol/errors.py. */
export class ScreenFormatError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ScreenFormatError";
    this.code = code;
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("screen update must be an ArrayBuffer or a typed array");
}

/** Peek kind, flags and seq (bytes 0-7) without validating the rest (like protocol.screen.peek_header). */
export function peekHeader(data) {
  const bytes = asBytes(data);
  if (bytes.length < HEADER_SIZE) throw new ScreenFormatError("malformed", "shorter than the header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { kind: view.getUint8(0), flags: view.getUint8(2), seq: view.getUint32(4) };
}

/**
 * Parse and validate one frame, checking sizes before anything else (as decode_update does).
 * Payloads are views into `data`, not copies.
 */
export function parseUpdate(data, { maxBytes = DEFAULT_MAX_BYTES, maxRects = DEFAULT_MAX_RECTS } = {}) {
  const bytes = asBytes(data);
  const size = bytes.length;
  if (size > maxBytes) throw new ScreenFormatError("too_large", `frame of ${size} bytes over ${maxBytes}`);
  if (size < HEADER_SIZE) throw new ScreenFormatError("malformed", `frame of ${size} bytes is too short`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = view.getUint8(0);
  const version = view.getUint8(1);
  const flags = view.getUint8(2);
  const monitor = view.getUint8(3);
  const seq = view.getUint32(4);
  const width = view.getUint16(8);
  const height = view.getUint16(10);
  const count = view.getUint16(12);
  if (kind !== FRAME_KIND_SCREEN_UPDATE) {
    throw new ScreenFormatError("malformed", `unknown binary frame kind 0x${kind.toString(16)}`);
  }
  if (version !== SCREEN_FORMAT_VERSION) {
    throw new ScreenFormatError("unsupported_version", `screen format version ${version}`);
  }
  if (flags & ~FLAG_KEYFRAME) throw new ScreenFormatError("invalid_field", "reserved flag bits set");
  if (count > maxRects) throw new ScreenFormatError("too_large", `${count} rects over ${maxRects}`);
  if (width === 0 || height === 0) throw new ScreenFormatError("invalid_field", "empty screen size");
  let offset = HEADER_SIZE;
  const rects = [];
  for (let i = 0; i < count; i++) {
    if (offset + RECT_HEADER_SIZE > size) {
      throw new ScreenFormatError("malformed", `truncated in the header of rect ${i}`);
    }
    const x = view.getUint16(offset);
    const y = view.getUint16(offset + 2);
    const w = view.getUint16(offset + 4);
    const h = view.getUint16(offset + 6);
    const encoding = view.getUint8(offset + 8);
    const length = view.getUint32(offset + 9);
    offset += RECT_HEADER_SIZE;
    if (offset + length > size) throw new ScreenFormatError("malformed", `truncated in rect ${i}`);
    if (encoding < 1 || encoding > 3) {
      throw new ScreenFormatError("invalid_field", `rect ${i} has unknown encoding ${encoding}`);
    }
    if (w === 0 || h === 0) throw new ScreenFormatError("invalid_field", `rect ${i} is empty`);
    if (x + w > width || y + h > height) {
      throw new ScreenFormatError("invalid_field", `rect ${i} lies outside the screen`);
    }
    rects.push({ x, y, w, h, encoding, payload: bytes.subarray(offset, offset + length) });
    offset += length;
  }
  if (offset !== size) throw new ScreenFormatError("malformed", `${size - offset} trailing bytes`);
  return { seq, width, height, monitor, keyframe: Boolean(flags & FLAG_KEYFRAME), rects };
}

/**
 * Inflate a zlib stream (RFC 1950) to exactly `expected` bytes; refuse anything that inflates
 * further (a zip bomb) or falls short.
 */
export async function inflateExactly(payload, expected) {
  const stream = new Blob([payload]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  const out = new Uint8Array(expected);
  let filled = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (filled + value.length > expected) {
        throw new ScreenFormatError("invalid_field", `raw rect inflates past ${expected} bytes`);
      }
      out.set(value, filled);
      filled += value.length;
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    if (err instanceof ScreenFormatError) throw err;
    throw new ScreenFormatError("invalid_field", `raw rect does not inflate: ${err.message}`);
  }
  if (filled !== expected) {
    throw new ScreenFormatError("invalid_field", `raw rect inflates to ${filled} bytes, not ${expected}`);
  }
  return out;
}

/** RGB (3 bytes per pixel) → an opaque ImageData. */
export function rgbToImageData(rgb, w, h) {
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i];
    rgba[j + 1] = rgb[i + 1];
    rgba[j + 2] = rgb[i + 2];
    rgba[j + 3] = 255;
  }
  return new ImageData(rgba, w, h);
}

/** Decode one rect's payload to something drawable: an ImageBitmap (JPEG/PNG) or ImageData (raw). */
export async function decodeRect(rect) {
  if (rect.encoding === Encoding.RAW_RGB_ZLIB) {
    const rgb = await inflateExactly(rect.payload, rect.w * rect.h * 3);
    return rgbToImageData(rgb, rect.w, rect.h);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([rect.payload], { type: MIME[rect.encoding] }), {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
  } catch (err) {
    throw new ScreenFormatError("invalid_field", `image does not decode: ${err.message}`);
  }
  if (bitmap.width !== rect.w || bitmap.height !== rect.h) {
    bitmap.close();
    throw new ScreenFormatError("invalid_field", `image is ${bitmap.width}x${bitmap.height}, not ${rect.w}x${rect.h}`);
  }
  return bitmap;
}

/** Serial-number arithmetic on u32 (RFC 1982): is `b` the update right after `a`? */
export function isNextSeq(a, b) {
  return ((b - a) >>> 0) === 1;
}

/**
 * The shared screen at its own size, painted by updates in order, and shown scaled to fit a
 * visible canvas. `needsKeyframe` is true until the first keyframe, after a gap in sequence
 * numbers, and after a rect failed to decode: the viewer should ask for a refresh (screen_refresh).
 */
export class ScreenCanvas {
  constructor(doc = document) {
    this.surface = doc.createElement("canvas");
    this.surface.width = 1;
    this.surface.height = 1;
    this.ctx = this.surface.getContext("2d", { alpha: false });
    this.width = 0;
    this.height = 0;
    this.monitor = null;
    this.lastSeq = null;
    this.updates = 0;
    this.keyframes = 0;
    this.needsKeyframe = true;
    this.errors = 0;
    this._chain = Promise.resolve();
  }

  /** Parse, decode and paint one frame. Calls are serialised so updates paint in order. */
  apply(data) {
    const bytes = asBytes(data).slice();  // own the bytes: the caller may reuse its buffer
    const run = this._chain.then(() => this._apply(bytes));
    this._chain = run.catch(() => {});
    return run;
  }

  async _apply(bytes) {
    let update;
    try {
      update = parseUpdate(bytes);
    } catch (err) {
      this.errors += 1;
      this.needsKeyframe = true;
      throw err;
    }
    if (!update.keyframe && this.lastSeq !== null && !isNextSeq(this.lastSeq, update.seq)) {
      this.needsKeyframe = true;  // the relay dropped updates: wait for a keyframe
    }
    this.lastSeq = update.seq;
    if (update.width !== this.width || update.height !== this.height) {
      this.width = update.width;
      this.height = update.height;
      this.surface.width = update.width;  // resizing clears the canvas
      this.surface.height = update.height;
      if (!update.keyframe) this.needsKeyframe = true;
    }
    this.monitor = update.monitor;
    let images;
    try {
      images = await Promise.all(update.rects.map((rect) => decodeRect(rect)));
    } catch (err) {
      this.errors += 1;
      this.needsKeyframe = true;
      throw err;
    }
    update.rects.forEach((rect, i) => {
      const image = images[i];
      if (image instanceof ImageData) {
        this.ctx.putImageData(image, rect.x, rect.y);
      } else {
        this.ctx.drawImage(image, rect.x, rect.y);
        image.close();
      }
    });
    this.updates += 1;
    if (update.keyframe) {
      this.keyframes += 1;
      this.needsKeyframe = false;
    }
    return update;
  }

  /** RGBA pixels of the shared screen (for tests and diagnostics). */
  pixels(x = 0, y = 0, w = this.width, h = this.height) {
    return this.ctx.getImageData(x, y, w, h).data;
  }

  /** The scale that fits the screen into a box, never more than `maxScale`. */
  fitScale(boxWidth, boxHeight, maxScale = 2) {
    if (!this.width || !this.height || boxWidth <= 0 || boxHeight <= 0) return 1;
    return Math.min(boxWidth / this.width, boxHeight / this.height, maxScale);
  }

  /** Draw the screen into `canvas`, resizing it to the fitted size; returns the scale used. */
  drawTo(canvas, boxWidth, boxHeight) {
    const scale = this.fitScale(boxWidth, boxHeight);
    const w = Math.max(1, Math.round(this.width * scale));
    const h = Math.max(1, Math.round(this.height * scale));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext("2d", { alpha: false });
    ctx.imageSmoothingEnabled = scale !== 1;
    ctx.imageSmoothingQuality = "high";
    if (this.width && this.height) ctx.drawImage(this.surface, 0, 0, w, h);
    return scale;
  }
}

/**
 * Map a point in a displayed canvas (CSS pixels from its top-left, as in MouseEvent.offsetX)
 * back to shared-screen pixels, clamped inside the screen. `displayWidth`/`displayHeight` are
 * the canvas's on-page size (getBoundingClientRect), which may differ from its pixel size.
 */
export function toScreenPoint(offsetX, offsetY, displayWidth, displayHeight, screenWidth, screenHeight) {
  if (!displayWidth || !displayHeight || !screenWidth || !screenHeight) return null;
  const x = Math.floor((offsetX * screenWidth) / displayWidth);
  const y = Math.floor((offsetY * screenHeight) / displayHeight);
  return {
    x: Math.min(Math.max(x, 0), screenWidth - 1),
    y: Math.min(Math.max(y, 0), screenHeight - 1),
  };
}

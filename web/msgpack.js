// A msgpack decoder for what the server sends: maps, arrays, strings, integers, floats, bin, nil and
// booleans (no ext types, which the server never uses). `bin` comes back as a Uint8Array view into
// the message's buffer: no copy.

const utf8 = new TextDecoder("utf-8", { fatal: true });

export class MsgpackError extends Error {}

export function decode(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const reader = new Reader(bytes);
  const value = reader.value();
  if (reader.pos !== bytes.length) {
    throw new MsgpackError(`${bytes.length - reader.pos} bytes left over after the value`);
  }
  return value;
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new MsgpackError("message ends in the middle of a value");
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }

  u64() {
    const value = this.view.getBigUint64(this.need(8));
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  i64() {
    const value = this.view.getBigInt64(this.need(8));
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    return value <= safe && value >= -safe ? Number(value) : value;
  }

  str(n) {
    const at = this.need(n);
    return utf8.decode(this.bytes.subarray(at, at + n));
  }

  bin(n) {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }

  array(n) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    return out;
  }

  map(n) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = String(this.value());
      const value = this.value();
      if (key === "__proto__") {
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  value() {
    const type = this.u8();
    if (type <= 0x7f) return type; // positive fixint
    if (type >= 0xe0) return type - 0x100; // negative fixint
    if (type >= 0x80 && type <= 0x8f) return this.map(type & 0x0f);
    if (type >= 0x90 && type <= 0x9f) return this.array(type & 0x0f);
    if (type >= 0xa0 && type <= 0xbf) return this.str(type & 0x1f);
    const v = this.view;
    switch (type) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: return v.getFloat32(this.need(4));
      case 0xcb: return v.getFloat64(this.need(8));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return v.getInt8(this.need(1));
      case 0xd1: return v.getInt16(this.need(2));
      case 0xd2: return v.getInt32(this.need(4));
      case 0xd3: return this.i64();
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16());
      case 0xdd: return this.array(this.u32());
      case 0xde: return this.map(this.u16());
      case 0xdf: return this.map(this.u32());
      default:
        throw new MsgpackError(`unsupported msgpack type 0x${type.toString(16)} at byte ${this.pos - 1}`);
    }
  }
}

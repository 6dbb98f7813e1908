/**
 * Images in: PNG, JPEG or WebP bytes (or base64, or a data: URL) decoded with sharp, then made
 * into the encoder's input the way Rockchip's VL demos do it (docs/vision.md, "Resize"):
 * EXIF-oriented, alpha dropped, padded to a centred square with grey (128, 128, 128), resized with
 * bilinear interpolation to the input's width and height, and laid out as UINT8 NHWC or NCHW.
 * An image already at the input size is not resampled, so its pixels pass through bit-exact.
 */
import sharp, { type Metadata } from 'sharp';
import { fault, type ServerError } from '../../errors.js';

export interface ImageLimits {
  /** The largest encoded image, in bytes. */
  maxBytes: number;
  /** The most pixels (width x height) a decoded image may have. */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxBytes: 20 * 1024 * 1024, maxPixels: 50_000_000 };

/** Decoded pixels: interleaved RGB, row after row (HWC). */
export interface RawImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** What the encoder's input attr asks for. */
export interface InputLayout {
  width: number;
  height: number;
  format: 'NHWC' | 'NCHW';
}

const FORMATS = new Set(['png', 'jpeg', 'webp']);
/** Demos fill with 127.5, which OpenCV rounds to 128. */
const PAD = { r: 128, g: 128, b: 128 };

function refused(reason: string, detail: string): ServerError {
  return fault('INVALID_PARAMS', 'detail', { detail }, { reason });
}

/** The bytes of an image sent as base64 or a `data:image/...;base64,` URL. The server fetches nothing: http(s) URLs are refused. */
export function imageBytes(source: string, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Buffer {
  if (/^https?:\/\//i.test(source)) {
    throw refused('image_url', 'image URLs are not fetched; send the image inline as a data URL (data:image/png;base64,...)');
  }
  const data = /^data:([^;,]*)(;base64)?,/i.exec(source);
  if (data && !data[2]) throw refused('image_unreadable', 'the data URL is not base64 (";base64," is missing)');
  const base64 = data ? source.slice(data[0].length) : source;
  if (Math.floor((base64.length * 3) / 4) > limits.maxBytes + 2) throw tooLarge(Math.floor((base64.length * 3) / 4), limits);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(base64.replace(/\s+/g, ''))) throw refused('image_unreadable', 'the image is not valid base64');
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length > limits.maxBytes) throw tooLarge(bytes.length, limits);
  return bytes;
}

function tooLarge(bytes: number, limits: ImageLimits): ServerError {
  return refused('image_too_large', `the image is ${bytes} bytes, over the limit of ${limits.maxBytes} bytes`);
}

/** Checks an image from its header, without decoding it: within the byte limit, PNG, JPEG or WebP, within the pixel limit. */
export async function checkImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<Metadata> {
  if (bytes.length > limits.maxBytes) throw tooLarge(bytes.length, limits);
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch (err) {
    throw refused('image_unreadable', `the image cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!meta.format || !FORMATS.has(meta.format)) {
    throw refused('image_format', `the image is ${meta.format ?? 'of an unknown format'}; send PNG, JPEG or WebP`);
  }
  const pixels = (meta.width ?? 0) * (meta.height ?? 0);
  if (pixels > limits.maxPixels) {
    throw refused(
      'image_too_many_pixels',
      `the image is ${meta.width}x${meta.height}, ${pixels} pixels, over the limit of ${limits.maxPixels}`,
    );
  }
  return meta;
}

/** Decodes PNG, JPEG or WebP bytes into RGB pixels, within the limits. */
export async function decodeImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<RawImage> {
  const meta = await checkImage(bytes, limits);
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: limits.maxPixels })
      .autoOrient()
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels after conversion to RGB`);
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    throw refused('image_unreadable', `the ${meta.format} image cannot be decoded: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Pads to a centred grey square and resizes to the input size (bilinear); an image at the input size is returned as it is. */
export async function resizeImage(image: RawImage, layout: InputLayout): Promise<RawImage> {
  if (image.rgb.length !== image.width * image.height * 3) {
    throw refused(
      'image_unreadable',
      `raw RGB pixels of ${image.width}x${image.height} need ${image.width * image.height * 3} bytes, not ${image.rgb.length}`,
    );
  }
  if (image.width === layout.width && image.height === layout.height) return image;
  const raw = { raw: { width: image.width, height: image.height, channels: 3 as const } };
  let square = sharp(image.rgb, raw);
  const side = Math.max(image.width, image.height);
  if (image.width !== image.height) {
    const left = Math.floor((side - image.width) / 2);
    const top = Math.floor((side - image.height) / 2);
    const padded = await square
      .extend({ left, right: side - image.width - left, top, bottom: side - image.height - top, background: PAD })
      .raw()
      .toBuffer();
    if (side === layout.width && side === layout.height) return { rgb: new Uint8Array(padded), width: side, height: side };
    square = sharp(padded, { raw: { width: side, height: side, channels: 3 } });
  }
  const data = await square.resize(layout.width, layout.height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
  return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: layout.width, height: layout.height };
}

/** Lays interleaved RGB out as the input asks: NHWC is HWC as it is; NCHW is three planes, R then G then B. */
export function layOut(image: RawImage, format: InputLayout['format']): Uint8Array {
  if (format === 'NHWC') return image.rgb;
  const plane = image.width * image.height;
  const out = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    out[i] = image.rgb[i * 3]!;
    out[plane + i] = image.rgb[i * 3 + 1]!;
    out[2 * plane + i] = image.rgb[i * 3 + 2]!;
  }
  return out;
}

/** An image (encoded bytes, or raw RGB) made into the encoder's input bytes. */
export async function prepareImage(
  image: Uint8Array | RawImage,
  layout: InputLayout,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  const raw = image instanceof Uint8Array ? await decodeImage(image, limits) : image;
  if (raw.width * raw.height > limits.maxPixels) {
    throw refused('image_too_many_pixels', `the image is ${raw.width}x${raw.height}, over the limit of ${limits.maxPixels} pixels`);
  }
  return { pixels: layOut(await resizeImage(raw, layout), layout.format), width: raw.width, height: raw.height };
}

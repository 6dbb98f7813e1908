/**
 * Images in (src/engine/rknn/image.ts): PNG, JPEG and WebP decode; base64 and data URLs; the
 * limits in bytes and pixels; the pad-to-square and bilinear resize of Rockchip's VL demos; the
 * NHWC and NCHW layouts; and an image at the input size passing through bit-exact.
 */
import { expect } from 'chai';
import sharp from 'sharp';
import {
  decodeImage,
  imageBytes,
  layOut,
  prepareImage,
  resizeImage,
  type ImageLimits,
  type RawImage,
} from '../../src/engine/rknn/image.js';
import { refusal } from '../helpers/thrown.js';

/** A w x h image whose every byte differs from its neighbours. */
function pattern(width: number, height: number): RawImage {
  const rgb = new Uint8Array(width * height * 3).map((_, i) => (i * 37 + 11) % 256);
  return { rgb, width, height };
}

function solid(width: number, height: number, [r, g, b]: number[]): RawImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set([r!, g!, b!], i * 3);
  return { rgb, width, height };
}

async function encoded(image: RawImage, format: 'png' | 'jpeg' | 'webp' | 'gif'): Promise<Buffer> {
  const pipeline = sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (format === 'webp') return pipeline.webp({ lossless: true }).toBuffer();
  return pipeline.toFormat(format).toBuffer();
}

describe('vision images: decoding, limits, resize and layout', function () {
  this.timeout(20_000);
  const image = pattern(7, 5);

  it('decodes PNG and lossless WebP bit-exact, and JPEG at its size', async () => {
    for (const format of ['png', 'webp'] as const) {
      const decoded = await decodeImage(await encoded(image, format));
      expect([decoded.width, decoded.height], format).to.deep.equal([7, 5]);
      expect(Buffer.from(decoded.rgb).equals(Buffer.from(image.rgb)), format).to.equal(true);
    }
    const jpeg = await decodeImage(await encoded(solid(16, 8, [200, 40, 90]), 'jpeg'));
    expect([jpeg.width, jpeg.height]).to.deep.equal([16, 8]);
    expect(Math.abs(jpeg.rgb[0]! - 200)).to.be.below(6);
  });

  it('reads base64 and data URLs alike, and refuses http(s) URLs without fetching', async () => {
    const png = await encoded(image, 'png');
    expect(imageBytes(png.toString('base64')).equals(png)).to.equal(true);
    expect(imageBytes(`data:image/png;base64,${png.toString('base64')}`).equals(png)).to.equal(true);
    const url = await refusal(() => imageBytes('https://example.com/cat.png'));
    expect(url.name).to.equal('INVALID_PARAMS');
    expect(url.data).to.deep.equal({ reason: 'image_url' });
    expect(url.message).to.match(/data URL/);
    expect((await refusal(() => imageBytes('data:image/png,abc'))).message).to.match(/not base64/);
    expect((await refusal(() => imageBytes('data:image/png;base64,@@@@'))).message).to.match(/not valid base64/);
  });

  it('refuses images over the byte and pixel limits, broken images and other formats, saying why', async () => {
    const png = await encoded(image, 'png');
    const small: ImageLimits = { maxBytes: png.length - 1, maxPixels: 1000 };
    const bytes = await refusal(decodeImage(png, small));
    expect(bytes.data).to.deep.equal({ reason: 'image_too_large' });
    expect(bytes.message).to.include(`over the limit of ${png.length - 1} bytes`);
    expect((await refusal(() => imageBytes(png.toString('base64'), small))).data).to.deep.equal({ reason: 'image_too_large' });
    const pixels = await refusal(decodeImage(png, { maxBytes: 1e6, maxPixels: 34 }));
    expect(pixels.data).to.deep.equal({ reason: 'image_too_many_pixels' });
    expect(pixels.message).to.include('7x5, 35 pixels, over the limit of 34');
    const raw = await refusal(prepareImage(image, { width: 7, height: 5, format: 'NHWC' }, { maxBytes: 1e6, maxPixels: 34 }));
    expect(raw.data).to.deep.equal({ reason: 'image_too_many_pixels' });
    const broken = await refusal(decodeImage(png.subarray(0, 40)));
    expect(broken.data).to.deep.equal({ reason: 'image_unreadable' });
    expect((await refusal(decodeImage(Buffer.from('not an image at all')))).message).to.match(/cannot be read/);
    const gif = await refusal(decodeImage(await encoded(image, 'gif')));
    expect(gif.data).to.deep.equal({ reason: 'image_format' });
    expect(gif.message).to.include('send PNG, JPEG or WebP');
    const short = await refusal(resizeImage({ rgb: new Uint8Array(5), width: 7, height: 5 }, { width: 7, height: 5, format: 'NHWC' }));
    expect(short.message).to.include('need 105 bytes, not 5');
  });

  it('passes an image already at the input size through bit-exact, from PNG or raw', async () => {
    const layout = { width: 7, height: 5, format: 'NHWC' } as const;
    const fromPng = await prepareImage(await encoded(image, 'png'), layout);
    expect(Buffer.from(fromPng.pixels).equals(Buffer.from(image.rgb))).to.equal(true);
    expect((await prepareImage(image, layout)).pixels).to.equal(image.rgb);
  });

  it('pads a non-square image to a centred grey square (128) before resizing, as the VL demos do', async () => {
    const padded = await resizeImage(solid(4, 2, [255, 0, 0]), { width: 4, height: 4, format: 'NHWC' });
    const row = (y: number): number[] => [...padded.rgb.subarray(y * 12, y * 12 + 12)];
    expect(row(0)).to.deep.equal(Array(4).fill([128, 128, 128]).flat());
    expect(row(1)).to.deep.equal(Array(4).fill([255, 0, 0]).flat());
    expect(row(2)).to.deep.equal(Array(4).fill([255, 0, 0]).flat());
    expect(row(3)).to.deep.equal(Array(4).fill([128, 128, 128]).flat());
    const tall = await resizeImage(solid(1, 3, [0, 0, 255]), { width: 3, height: 3, format: 'NHWC' });
    expect([...tall.rgb.subarray(0, 9)]).to.deep.equal([128, 128, 128, 0, 0, 255, 128, 128, 128]);
  });

  it('resizes bilinearly to the input size', async () => {
    const down = await resizeImage(solid(16, 16, [10, 200, 30]), { width: 4, height: 4, format: 'NHWC' });
    expect([down.width, down.height, down.rgb.length]).to.deep.equal([4, 4, 48]);
    expect([...down.rgb]).to.deep.equal(Array(16).fill([10, 200, 30]).flat());
    const up = await resizeImage(pattern(3, 3), { width: 12, height: 12, format: 'NHWC' });
    expect(up.rgb.length).to.equal(12 * 12 * 3);
  });

  it('lays pixels out as NHWC (as decoded) or NCHW (planes R, G, B)', () => {
    const two: RawImage = { rgb: Uint8Array.from([1, 2, 3, 4, 5, 6]), width: 2, height: 1 };
    expect([...layOut(two, 'NHWC')]).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect([...layOut(two, 'NCHW')]).to.deep.equal([1, 4, 2, 5, 3, 6]);
  });
});

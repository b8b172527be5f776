import type { Crop } from "./api/types";

export interface DisplayedCrop {
  x: number;
  y: number;
  width: number;
  height: number;
  imageWidth: number;
  imageHeight: number;
}

/** What the cropper reports: the crop on the displayed image, and its rotation. */
export interface CropResult extends DisplayedCrop {
  rotate: number;
}

/**
 * Scale a crop made on the displayed image to the stored photo's pixels, inside it.
 *
 * The server may have stored the photo at another size than the file the browser shows.
 */
export function toStoredCrop(crop: DisplayedCrop, stored: { width: number; height: number }): Crop {
  const sx = stored.width / crop.imageWidth;
  const sy = stored.height / crop.imageHeight;
  const x = clamp(Math.round(crop.x * sx), 0, stored.width - 1);
  const y = clamp(Math.round(crop.y * sy), 0, stored.height - 1);
  const width = clamp(Math.round(crop.width * sx), 1, stored.width - x);
  const height = clamp(Math.round(crop.height * sy), 1, stored.height - y);
  return { x, y, width, height };
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

/** Tell whether a rotation (in degrees) leaves the photo as it is. */
export function isUnrotated(degrees: number): boolean {
  return ((degrees % 360) + 360) % 360 === 0;
}

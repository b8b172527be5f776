import { describe, expect, it } from "vitest";
import { isUnrotated, toStoredCrop } from "./crop";

describe("toStoredCrop", () => {
  it("scales the displayed crop to the stored photo's pixels", () => {
    const crop = { x: 100, y: 50, width: 400, height: 300, imageWidth: 1000, imageHeight: 800 };
    expect(toStoredCrop(crop, { width: 500, height: 400 })).toEqual({ x: 50, y: 25, width: 200, height: 150 });
  });

  it("keeps the rectangle inside the photo", () => {
    const crop = { x: -3, y: 790, width: 1010, height: 20, imageWidth: 1000, imageHeight: 800 };
    expect(toStoredCrop(crop, { width: 1000, height: 800 })).toEqual({ x: 0, y: 790, width: 1000, height: 10 });
  });

  it("tells whole turns from rotations", () => {
    expect(isUnrotated(0)).toBe(true);
    expect(isUnrotated(-360)).toBe(true);
    expect(isUnrotated(90)).toBe(false);
  });
});

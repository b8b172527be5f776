import { describe, expect, it } from "vitest";
import { makeJob } from "./test-helpers";
import { elapsedSeconds, etaSeconds, formatDuration, formatPercent, formatUsd, isTerminal } from "./format";

describe("format", () => {
  it("formats durations for people", () => {
    expect(formatDuration(4.4)).toBe("4 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(3720)).toBe("1 h 02 min");
  });

  it("measures elapsed time until the job finished", () => {
    const job = makeJob({ created_at: "2026-11-24T10:00:00Z", finished_at: "2026-11-24T10:00:30Z" });
    expect(elapsedSeconds(job, Date.parse("2026-11-24T11:00:00Z"))).toBe(30);
    expect(elapsedSeconds({ ...job, finished_at: null }, Date.parse("2026-11-24T10:01:00Z"))).toBe(60);
  });

  it("extrapolates the time left from the progress rate", () => {
    const job = makeJob({ state: "running", started_at: "2026-11-24T10:00:00Z", progress: 0.25 });
    expect(etaSeconds(job, Date.parse("2026-11-24T10:00:10Z"))).toBeCloseTo(30);
  });

  it("gives no ETA without enough progress or once the job is over", () => {
    const now = Date.parse("2026-11-24T10:00:10Z");
    expect(etaSeconds(makeJob({ progress: 0.01 }), now)).toBeNull();
    expect(etaSeconds(makeJob({ state: "succeeded", progress: 1 }), now)).toBeNull();
    expect(etaSeconds(makeJob({ state: "queued", started_at: null }), now)).toBeNull();
  });

  it("formats money and percentages", () => {
    expect(formatUsd("12.5")).toBe("$12.50");
    expect(formatUsd("0.000123")).toBe("$0.0001");
    expect(formatUsd(null)).toBe("—");
    expect(formatPercent(0.456)).toBe("46%");
    expect(formatPercent(1.2)).toBe("100%");
  });

  it("knows the terminal states", () => {
    expect(isTerminal("succeeded")).toBe(true);
    expect(isTerminal("retry_wait")).toBe(false);
  });
});

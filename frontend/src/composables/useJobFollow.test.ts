import { flushPromises, mount } from "@vue/test-utils";
import { afterEach, describe, expect, it, vi } from "vitest";
import { defineComponent, h } from "vue";
import { ApiClient } from "../api/client";
import { FakeEventSource, makeEvent, makeJob } from "../test-helpers";
import { useJobFollow, type FollowOptions, type JobFollow } from "./useJobFollow";

function follow(options: FollowOptions): { state: JobFollow; unmount: () => void } {
  let state!: JobFollow;
  const Host = defineComponent({
    setup() {
      state = useJobFollow("j1", options);
      return () => h("div");
    },
  });
  const wrapper = mount(Host);
  return { state, unmount: () => wrapper.unmount() };
}

function fakeClient(overrides: Partial<ApiClient>): ApiClient {
  return Object.assign(Object.create(ApiClient.prototype), overrides) as ApiClient;
}

afterEach(() => {
  FakeEventSource.instances = [];
  vi.useRealTimers();
});

describe("useJobFollow", () => {
  it("follows over SSE and fetches the finished job at the end", async () => {
    const done = makeJob({ state: "succeeded", progress: 1, result_url: "/r" });
    const client = fakeClient({ getJob: vi.fn().mockResolvedValue(done) });
    const { state, unmount } = follow({ client, eventSource: FakeEventSource as unknown as typeof EventSource });
    await state.start(makeJob({ progress: 0 }));
    const source = FakeEventSource.instances[0];
    expect(source.url).toBe("/api/v1/jobs/j1/events");
    expect(state.mode.value).toBe("sse");
    source.open();
    source.emit(makeEvent("progress", { progress: 0.7 }));
    expect(state.job.value?.progress).toBe(0.7);
    source.emit(makeEvent("state", {}, "succeeded"));
    await flushPromises();
    expect(state.job.value).toEqual(done);
    expect(source.readyState).toBe(FakeEventSource.CLOSED);
    expect(state.events.value.map((e) => e.kind)).toEqual(["progress", "state"]);
    unmount();
  });

  it("falls back to polling when the stream cannot open", async () => {
    vi.useFakeTimers();
    const progress = makeEvent("progress", { progress: 0.5 });
    const finished = makeEvent("state", {}, "succeeded");
    const jobEvents = vi
      .fn()
      .mockResolvedValueOnce({ items: [progress], is_terminal: false })
      .mockResolvedValueOnce({ items: [finished], is_terminal: true });
    const getJob = vi.fn().mockResolvedValue(makeJob({ state: "succeeded", progress: 1 }));
    const { state, unmount } = follow({
      client: fakeClient({ jobEvents, getJob }),
      eventSource: FakeEventSource as unknown as typeof EventSource,
      pollIntervalMs: 1000,
    });
    await state.start(makeJob({ progress: 0 }));
    FakeEventSource.instances[0].fail(true);
    await flushPromises();
    expect(state.mode.value).toBe("polling");
    expect(jobEvents).toHaveBeenLastCalledWith("j1", 0);
    expect(state.job.value?.progress).toBe(0.5);
    await vi.advanceTimersByTimeAsync(1000);
    expect(jobEvents).toHaveBeenLastCalledWith("j1", progress.id);
    expect(state.job.value?.state).toBe("succeeded");
    expect(state.mode.value).toBe("idle");
    unmount();
  });

  it("reads the history once for a job that has already ended", async () => {
    const jobEvents = vi.fn().mockResolvedValue({ items: [makeEvent("state", {}, "failed")], is_terminal: true });
    const { state, unmount } = follow({ client: fakeClient({ jobEvents }), eventSource: null });
    await state.start(makeJob({ state: "failed" }));
    expect(state.events.value).toHaveLength(1);
    expect(state.mode.value).toBe("idle");
    unmount();
  });

  it("keeps the error of an unreachable API for the page to show", async () => {
    const client = fakeClient({ getJob: vi.fn().mockRejectedValue(new Error("cannot reach the clipyard API")) });
    const { state, unmount } = follow({ client, eventSource: null });
    await state.start();
    expect(state.error.value).toBe("cannot reach the clipyard API");
    unmount();
  });
});

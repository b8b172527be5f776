import { flushPromises, mount } from "@vue/test-utils";
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/problem";
import type { Template } from "../api/types";
import { makeEvent, makeJob } from "../test-helpers";
import AuthForm from "./AuthForm.vue";
import BatchRow from "./BatchRow.vue";
import EventTimeline from "./EventTimeline.vue";
import JobTiming from "./JobTiming.vue";
import LoadState from "./LoadState.vue";
import ProgressBar from "./ProgressBar.vue";
import TemplateGallery from "./TemplateGallery.vue";
import UploadDrop from "./UploadDrop.vue";

async function fillAndSubmit(wrapper: ReturnType<typeof mount>, email: string, password: string) {
  await wrapper.get("#email").setValue(email);
  await wrapper.get("#password").setValue(password);
  await wrapper.get("form").trigger("submit");
  await flushPromises();
}

describe("AuthForm", () => {
  it("checks the fields before asking the server", async () => {
    const submit = vi.fn();
    const wrapper = mount(AuthForm, { props: { title: "Sign up", submitLabel: "Sign up", submit } });
    await fillAndSubmit(wrapper, "nope", "short");
    expect(submit).not.toHaveBeenCalled();
    expect(wrapper.get("[data-testid=email-error]").text()).toMatch(/email address/);
    expect(wrapper.get("#password").attributes("aria-invalid")).toBe("true");
    expect(wrapper.get("#password").attributes("aria-describedby")).toBe("password-error");
  });

  it("shows the server's field errors next to the field", async () => {
    const submit = vi.fn().mockRejectedValue(
      new ApiError({ title: "Email taken", status: 409, detail: "email: already registered", field: "email" }),
    );
    const wrapper = mount(AuthForm, { props: { title: "Sign up", submitLabel: "Sign up", submit } });
    await fillAndSubmit(wrapper, "a@example.com", "long enough");
    expect(submit).toHaveBeenCalledWith({ email: "a@example.com", password: "long enough" });
    expect(wrapper.get("[data-testid=email-error]").text()).toBe("already registered");
    expect(wrapper.emitted("done")).toBeUndefined();
  });

  it("shows an error about the whole form as an alert", async () => {
    const submit = vi.fn().mockRejectedValue(new ApiError({ title: "Invalid credentials", status: 401, detail: "wrong email or password" }));
    const wrapper = mount(AuthForm, { props: { title: "Sign in", submitLabel: "Sign in", submit } });
    await fillAndSubmit(wrapper, "a@example.com", "long enough");
    expect(wrapper.get("[role=alert]").text()).toBe("wrong email or password");
  });

  it("emits done after a successful submit", async () => {
    const wrapper = mount(AuthForm, { props: { title: "Sign in", submitLabel: "Sign in", submit: vi.fn().mockResolvedValue({}) } });
    await fillAndSubmit(wrapper, "a@example.com", "long enough");
    expect(wrapper.emitted("done")).toHaveLength(1);
  });
});

describe("LoadState", () => {
  it("shows loading, then empty, then content", async () => {
    const wrapper = mount(LoadState, {
      props: { isLoading: true, isEmpty: true, emptyText: "No videos" },
      slots: { default: "<p class='content'>list</p>" },
    });
    expect(wrapper.text()).toContain("Loading");
    await wrapper.setProps({ isLoading: false });
    expect(wrapper.text()).toContain("No videos");
    await wrapper.setProps({ isEmpty: false });
    expect(wrapper.find(".content").exists()).toBe(true);
  });

  it("shows an error with a retry button", async () => {
    const wrapper = mount(LoadState, { props: { isLoading: false, isEmpty: true, error: "cannot reach the API" } });
    expect(wrapper.get("[role=alert]").text()).toContain("cannot reach the API");
    expect(wrapper.text()).not.toContain("Nothing here yet");
    await wrapper.get("button").trigger("click");
    expect(wrapper.emitted("retry")).toHaveLength(1);
  });
});

describe("ProgressBar", () => {
  it("is an accessible progressbar clamped to 0..100", () => {
    const wrapper = mount(ProgressBar, { props: { value: 1.3, label: "Upload" } });
    const bar = wrapper.get("[role=progressbar]");
    expect(bar.attributes("aria-valuenow")).toBe("100");
    expect(bar.attributes("aria-label")).toBe("Upload");
  });
});

describe("JobTiming", () => {
  it("shows progress, elapsed time and an ETA while running", () => {
    vi.useFakeTimers({ now: Date.parse("2026-11-24T10:00:12Z") });
    const job = makeJob({ created_at: "2026-11-24T10:00:00Z", started_at: "2026-11-24T10:00:02Z", progress: 0.5 });
    const wrapper = mount(JobTiming, { props: { job } });
    expect(wrapper.get("[data-testid=job-progress]").text()).toBe("50%");
    expect(wrapper.text()).toContain("elapsed 12 s");
    expect(wrapper.get("[data-testid=job-eta]").text()).toContain("10 s left");
    wrapper.unmount();
    vi.useRealTimers();
  });

  it("shows how long a finished job took, without an ETA", () => {
    const job = makeJob({ state: "succeeded", progress: 1, created_at: "2026-11-24T10:00:00Z", finished_at: "2026-11-24T10:01:05Z" });
    const wrapper = mount(JobTiming, { props: { job } });
    expect(wrapper.text()).toContain("took 1 min 05 s");
    expect(wrapper.find("[data-testid=job-eta]").exists()).toBe(false);
  });
});

describe("EventTimeline", () => {
  it("words each event and folds a run of progress into its latest", () => {
    const events = [
      makeEvent("state", { reason: "submitted" }, "queued"),
      makeEvent("progress", { progress: 0.1 }),
      makeEvent("progress", { progress: 0.6 }),
      makeEvent("cancel_requested"),
      makeEvent("state", {}, "cancelled"),
    ];
    const items = mount(EventTimeline, { props: { events } }).findAll("li").map((li) => li.text());
    expect(items).toHaveLength(4);
    expect(items[0]).toContain("Queued (submitted)");
    expect(items[1]).toContain("Progress 60%");
    expect(items[2]).toContain("Cancellation requested");
    expect(items[3]).toContain("Cancelled");
  });
});

describe("TemplateGallery", () => {
  const templates: Template[] = [
    { name: "frame", title: "Frame", duration_s: 8, fps: 25, width: 1280, height: 720, placement_aspect: 1.33, poster_url: "/p/frame" },
    { name: "screen", title: "Screen", duration_s: 10, fps: 30, width: 1920, height: 1080, placement_aspect: 1.6, poster_url: null, preview_url: "/v/screen" },
  ];

  it("shows posters and looping previews, and selects with radio buttons", async () => {
    const wrapper = mount(TemplateGallery, { props: { templates, modelValue: "frame" } });
    expect(wrapper.get("[data-testid=template-frame] img").attributes("src")).toBe("/p/frame");
    const preview = wrapper.get("[data-testid=template-screen] video");
    expect(preview.attributes()).toMatchObject({ src: "/v/screen", loop: "", autoplay: "" });
    await wrapper.get("input[value=screen]").setValue(true);
    expect(wrapper.emitted("update:modelValue")?.[0]).toEqual(["screen"]);
  });
});

describe("UploadDrop", () => {
  it("emits a dropped file", async () => {
    const wrapper = mount(UploadDrop, { props: { progress: null, error: null } });
    const file = new File(["x"], "p.png", { type: "image/png" });
    await wrapper.get("[data-testid=drop-zone]").trigger("drop", { dataTransfer: { files: [file] } });
    expect(wrapper.emitted("file")?.[0]).toEqual([file]);
  });

  it("shows upload progress and the server's refusal", () => {
    const wrapper = mount(UploadDrop, { props: { progress: 0.4, error: "the photo is larger than 25 MB", fileName: "big.jpg" } });
    expect(wrapper.get("[role=progressbar]").attributes("aria-valuenow")).toBe("40");
    expect(wrapper.get("[data-testid=upload-error]").text()).toBe("the photo is larger than 25 MB");
  });
});

describe("BatchRow", () => {
  it("shows jobs finished, running and spend against budget", () => {
    const batch = {
      id: "b", name: "spring", state: "open", paused_reason: null, budget_usd: "2.00", reserved_usd: "0.10",
      spent_usd: "1.00", max_concurrent: 2, cpu: "1", memory_gb: "1.5", max_runtime_s: 900, is_spot: false,
      created_at: "", jobs_by_state: { succeeded: 3, running: 1, queued: 4 },
    };
    const wrapper = mount(BatchRow, { props: { batch } });
    expect(wrapper.text()).toContain("3 of 8 jobs finished");
    expect(wrapper.get("[data-testid=batch-running]").text()).toBe("1 running");
    expect(wrapper.text()).toContain("Spent $1.00 (+$0.10 reserved) of $2.00");
    expect(wrapper.findAll("[role=progressbar]")[1].attributes("aria-valuenow")).toBe("50");
  });
});

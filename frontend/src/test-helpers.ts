// Shared by the unit tests: canned API answers and fakes of browser objects.
import { vi } from "vitest";
import type { Job, JobEvent } from "./api/types";

export function jsonResponse(body: unknown, status = 200, contentType = "application/json"): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": contentType },
  });
}

export function problemResponse(status: number, title: string, detail: string, extra: object = {}): Response {
  return jsonResponse({ type: "about:blank", title, status, detail, ...extra }, status, "application/problem+json");
}

/** A fetch that answers each call with the next response given. */
export function fakeFetch(...responses: Response[]) {
  return vi.fn<typeof fetch>(async () => {
    const next = responses.shift();
    if (!next) throw new Error("unexpected fetch");
    return next;
  });
}

export function makeJob(overrides: Partial<Job> = {}): Job {
  return {
    id: "11111111-2222-3333-4444-555555555555",
    state: "running",
    template_id: "t",
    upload_id: "u",
    batch_id: null,
    row_id: null,
    crop: null,
    progress: 0.25,
    attempt: 1,
    max_attempts: 3,
    cancel_requested: false,
    error_code: null,
    error_message: null,
    estimated_cost_usd: "0.0010",
    actual_cost_usd: "0",
    created_at: "2026-11-24T10:00:00Z",
    started_at: "2026-11-24T10:00:02Z",
    finished_at: null,
    result_url: null,
    poster_url: null,
    ...overrides,
  };
}

let nextEventId = 1;
export function makeEvent(kind: string, data: Record<string, unknown> = {}, toState: string | null = null): JobEvent {
  return { id: nextEventId++, kind, from_state: null, to_state: toState, data, created_at: "2026-11-24T10:00:05Z" };
}

/** An EventSource the test drives by hand. */
export class FakeEventSource {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  static instances: FakeEventSource[] = [];
  readyState = FakeEventSource.CONNECTING;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  private listeners = new Map<string, ((event: MessageEvent<string>) => void)[]>();

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }

  addEventListener(kind: string, listener: (event: MessageEvent<string>) => void): void {
    this.listeners.set(kind, [...(this.listeners.get(kind) ?? []), listener]);
  }

  open(): void {
    this.readyState = FakeEventSource.OPEN;
    this.onopen?.();
  }

  emit(event: JobEvent): void {
    for (const listener of this.listeners.get(event.kind) ?? []) {
      listener(new MessageEvent(event.kind, { data: JSON.stringify(event) }));
    }
  }

  fail(isClosed: boolean): void {
    this.readyState = isClosed ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING;
    this.onerror?.();
  }

  close(): void {
    this.readyState = FakeEventSource.CLOSED;
  }
}

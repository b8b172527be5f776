// Follow one job live: Server-Sent Events first, polling ``?after=`` when SSE fails.
import { onBeforeUnmount, ref, shallowRef, type Ref } from "vue";
import { api, jobEventsStreamUrl, type ApiClient } from "../api/client";
import { describeError } from "../api/problem";
import type { Job, JobEvent } from "../api/types";
import { isTerminal } from "../format";

// Every kind the task managers write; the SSE stream names each frame by its kind.
export const EVENT_KINDS = [
  "state",
  "run_state",
  "progress",
  "cancel_requested",
  "requeued",
  "admission",
  "adopted",
  "adoption_requested",
  "handed_over",
  "leaked_container_removed",
];

export type FollowMode = "idle" | "sse" | "polling";

export interface FollowOptions {
  client?: ApiClient;
  pollIntervalMs?: number;
  // Tests pass a fake; null means "this browser has no EventSource": poll.
  eventSource?: typeof EventSource | null;
}

export interface JobFollow {
  job: Ref<Job | null>;
  events: Ref<JobEvent[]>;
  mode: Ref<FollowMode>;
  error: Ref<string | null>;
  start: (initial?: Job) => Promise<void>;
  stop: () => void;
  /** Fetch the job again (after cancel or retry) and follow it if it is live. */
  refresh: () => Promise<void>;
}

/** Keep ``job`` and ``events`` current until the job ends or the component goes. */
export function useJobFollow(jobId: string, options: FollowOptions = {}): JobFollow {
  const client = options.client ?? api;
  const pollIntervalMs = options.pollIntervalMs ?? 1500;
  const Source = options.eventSource === undefined ? globalThis.EventSource : options.eventSource;
  const job = shallowRef<Job | null>(null);
  const events = ref<JobEvent[]>([]) as Ref<JobEvent[]>;
  const mode = ref<FollowMode>("idle");
  const error = ref<string | null>(null);
  let lastId = 0;
  let source: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let isStopped = false;

  function apply(event: JobEvent): void {
    if (event.id <= lastId) return;
    lastId = event.id;
    events.value = [...events.value, event];
    const current = job.value;
    if (!current) return;
    if (event.kind === "progress" && typeof event.data.progress === "number") {
      job.value = { ...current, progress: Math.max(current.progress, event.data.progress) };
    } else if (event.kind === "state" && event.to_state) {
      job.value = { ...current, state: event.to_state as Job["state"] };
    }
  }

  async function finish(): Promise<void> {
    closeSource();
    mode.value = "idle";
    // The terminal state's fields (result, poster, cost, error) come with the job itself.
    try {
      job.value = await client.getJob(jobId);
    } catch (caught) {
      error.value = describeError(caught);
    }
  }

  function closeSource(): void {
    source?.close();
    source = null;
  }

  function openStream(): void {
    if (!Source) {
      startPolling();
      return;
    }
    mode.value = "sse";
    let hasOpened = false;
    const stream = new Source(jobEventsStreamUrl(jobId), { withCredentials: true });
    source = stream;
    stream.onopen = () => {
      hasOpened = true;
      error.value = null;
    };
    const onFrame = (frame: MessageEvent<string>): void => {
      const event = JSON.parse(frame.data) as JobEvent;
      apply(event);
      if (event.kind === "state" && event.to_state && isTerminal(event.to_state)) void finish();
    };
    for (const kind of EVENT_KINDS) stream.addEventListener(kind, onFrame as EventListener);
    stream.addEventListener("end", () => void finish());
    stream.onerror = () => {
      // The browser reconnects by itself (sending Last-Event-ID) unless the stream is
      // closed for good, or never opened at all: then poll instead.
      if (stream.readyState === Source.CLOSED || !hasOpened) {
        closeSource();
        startPolling();
      }
    };
  }

  function startPolling(): void {
    mode.value = "polling";
    const poll = async (): Promise<void> => {
      if (isStopped) return;
      try {
        const page = await client.jobEvents(jobId, lastId);
        page.items.forEach(apply);
        error.value = null;
        if (page.is_terminal) {
          await finish();
          return;
        }
      } catch (caught) {
        error.value = describeError(caught);
      }
      if (!isStopped) timer = setTimeout(poll, pollIntervalMs);
    };
    void poll();
  }

  async function start(initial?: Job): Promise<void> {
    isStopped = false;
    try {
      job.value = initial ?? (await client.getJob(jobId));
      error.value = null;
    } catch (caught) {
      error.value = describeError(caught);
      return;
    }
    if (isTerminal(job.value.state)) {
      // Nothing more will happen: read the history once.
      try {
        const page = await client.jobEvents(jobId, lastId);
        page.items.forEach(apply);
      } catch (caught) {
        error.value = describeError(caught);
      }
      return;
    }
    if (!isStopped) openStream();
  }

  function stop(): void {
    isStopped = true;
    clearTimeout(timer);
    closeSource();
    mode.value = "idle";
  }

  async function refresh(): Promise<void> {
    stop();
    await start();
  }

  onBeforeUnmount(stop);
  return { job, events, mode, error, start, stop, refresh };
}

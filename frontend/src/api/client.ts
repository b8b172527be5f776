// The typed client for the clipyard API: one method per operation the app uses.
//
// The browser signs in with a cookie; state-changing requests carry the session's
// CSRF token (from sign-in, sign-up or /auth/me) in X-CSRF-Token.
import { ApiError, problemFrom, unreachable } from "./problem";
import type {
  Batch,
  Credentials,
  EventList,
  Job,
  JobCreate,
  JobPage,
  JobState,
  SessionOut,
  Summary,
  Template,
  Upload,
} from "./types";

export const API = "/api/v1";
export const CSRF_HEADER = "X-CSRF-Token";

type Method = "GET" | "POST" | "DELETE";

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ListJobsQuery {
  state?: JobState[];
  batchId?: string;
  limit?: number;
  cursor?: string | null;
}

export interface UploadOptions {
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** Create the XMLHttpRequest used for uploads (a seam for tests). */
export type XhrFactory = () => XMLHttpRequest;

export class ApiClient {
  private csrfToken = "";
  /** Called when a signed-in request answers 401 (the session expired or was revoked). */
  onUnauthorized: (() => void) | null = null;

  constructor(
    private readonly fetcher: typeof fetch = (...args) => fetch(...args),
    private readonly newXhr: XhrFactory = () => new XMLHttpRequest(),
  ) {}

  get csrf(): string {
    return this.csrfToken;
  }

  /** Send one request; return its JSON body (undefined for 204); throw ApiError. */
  async request<T>(method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    if (method !== "GET" && this.csrfToken) headers[CSRF_HEADER] = this.csrfToken;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await this.fetcher(path, {
        method,
        headers,
        body,
        credentials: "same-origin",
        signal: options.signal,
      });
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") throw error;
      throw unreachable();
    }
    const text = await response.text();
    if (!response.ok) {
      if (response.status === 401 && !path.startsWith(`${API}/auth/`)) this.onUnauthorized?.();
      throw problemFrom(response.status, response.statusText, text);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  private remember(session: SessionOut): SessionOut {
    this.csrfToken = session.csrf_token;
    return session;
  }

  async signup(credentials: Credentials): Promise<SessionOut> {
    return this.remember(await this.request<SessionOut>("POST", `${API}/auth/signup`, { body: credentials }));
  }

  async login(credentials: Credentials): Promise<SessionOut> {
    return this.remember(await this.request<SessionOut>("POST", `${API}/auth/login`, { body: credentials }));
  }

  async logout(): Promise<void> {
    try {
      await this.request<void>("POST", `${API}/auth/logout`);
    } finally {
      this.csrfToken = "";
    }
  }

  /** Return the signed-in user, or null when nobody is signed in. */
  async me(): Promise<SessionOut | null> {
    try {
      return this.remember(await this.request<SessionOut>("GET", `${API}/auth/me`));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.csrfToken = "";
        return null;
      }
      throw error;
    }
  }

  async templates(): Promise<Template[]> {
    return (await this.request<{ items: Template[] }>("GET", `${API}/templates`)).items;
  }

  /** Upload a photo as multipart field "file", reporting progress (XHR: fetch cannot). */
  uploadPhoto(file: Blob, filename: string, options: UploadOptions = {}): Promise<Upload> {
    return new Promise((resolve, reject) => {
      const xhr = this.newXhr();
      xhr.open("POST", `${API}/uploads`);
      xhr.setRequestHeader("Accept", "application/json");
      if (this.csrfToken) xhr.setRequestHeader(CSRF_HEADER, this.csrfToken);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable && event.total > 0) options.onProgress?.(event.loaded / event.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          options.onProgress?.(1);
          resolve(JSON.parse(xhr.responseText) as Upload);
        } else {
          reject(problemFrom(xhr.status, xhr.statusText, xhr.responseText));
        }
      };
      xhr.onerror = () => reject(unreachable());
      xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
      options.signal?.addEventListener("abort", () => xhr.abort(), { once: true });
      const form = new FormData();
      form.append("file", file, filename);
      xhr.send(form);
    });
  }

  /** Submit a job; the idempotency key makes a double click (or a retry) submit once. */
  createJob(body: JobCreate, idempotencyKey: string): Promise<Job> {
    return this.request<Job>("POST", `${API}/jobs`, {
      body,
      headers: { "Idempotency-Key": idempotencyKey },
    });
  }

  listJobs(query: ListJobsQuery = {}, signal?: AbortSignal): Promise<JobPage> {
    const params = new URLSearchParams();
    for (const state of query.state ?? []) params.append("state", state);
    if (query.batchId) params.set("batch_id", query.batchId);
    if (query.limit) params.set("limit", String(query.limit));
    if (query.cursor) params.set("cursor", query.cursor);
    const search = params.toString();
    return this.request<JobPage>("GET", `${API}/jobs${search ? `?${search}` : ""}`, { signal });
  }

  getJob(id: string, signal?: AbortSignal): Promise<Job> {
    return this.request<Job>("GET", jobPath(id), { signal });
  }

  cancelJob(id: string): Promise<Job> {
    return this.request<Job>("POST", `${jobPath(id)}/cancel`);
  }

  retryJob(id: string): Promise<Job> {
    return this.request<Job>("POST", `${jobPath(id)}/retry`);
  }

  /** Return the job's events with an id greater than ``after`` (the polling fallback). */
  jobEvents(id: string, after = 0, signal?: AbortSignal): Promise<EventList> {
    return this.request<EventList>("GET", `${jobPath(id)}/events?after=${after}`, { signal });
  }

  batches(): Promise<Batch[]> {
    return this.request<{ items: Batch[] }>("GET", `${API}/batches`).then((list) => list.items);
  }

  /** Return one batch with its jobs counted by state (the list leaves them out). */
  batch(id: string): Promise<Batch> {
    return this.request<Batch>("GET", `${API}/batches/${encodeURIComponent(id)}`);
  }

  summary(): Promise<Summary> {
    return this.request<Summary>("GET", `${API}/ops/summary`);
  }
}

export function jobPath(id: string): string {
  return `${API}/jobs/${encodeURIComponent(id)}`;
}

/** The SSE stream of a job's events (EventSource sends Last-Event-ID on reconnect). */
export function jobEventsStreamUrl(id: string): string {
  return `${jobPath(id)}/events`;
}

/** The app's one client. */
export const api = new ApiClient();

import { describe, expect, it, vi } from "vitest";
import { fakeFetch, jsonResponse, problemResponse } from "../test-helpers";
import { ApiClient, CSRF_HEADER } from "./client";
import { ApiError } from "./problem";

const session = { user: { id: "u1", email: "a@example.com", role: "user", created_at: "" }, csrf_token: "tok" };

function headersOf(fetcher: ReturnType<typeof fakeFetch>, call: number): Record<string, string> {
  return fetcher.mock.calls[call][1]!.headers as Record<string, string>;
}

describe("ApiClient", () => {
  it("sends the CSRF token from sign-in on state-changing requests only", async () => {
    const fetcher = fakeFetch(jsonResponse(session), jsonResponse({ items: [], next_cursor: null }), jsonResponse({ id: "j" }, 202));
    const client = new ApiClient(fetcher);
    await client.login({ email: "a@example.com", password: "12345678" });
    await client.listJobs();
    await client.cancelJob("j");
    expect(headersOf(fetcher, 1)[CSRF_HEADER]).toBeUndefined();
    expect(headersOf(fetcher, 2)[CSRF_HEADER]).toBe("tok");
    expect(fetcher.mock.calls[2][0]).toBe("/api/v1/jobs/j/cancel");
  });

  it("turns a problem+json answer into an ApiError with errors by field", async () => {
    const fetcher = fakeFetch(
      problemResponse(422, "Invalid request", "password: String should have at least 8 characters", {
        field: "password",
        errors: [{ field: "password", message: "String should have at least 8 characters" }],
      }),
    );
    const error = await new ApiClient(fetcher).signup({ email: "a@example.com", password: "x" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect((error as ApiError).fieldErrors).toEqual({ password: "String should have at least 8 characters" });
  });

  it("names a field from `field` alone, without repeating it in the message", () => {
    const error = new ApiError({ title: "Email taken", status: 409, detail: "email: already registered", field: "email" });
    expect(error.fieldErrors).toEqual({ email: "already registered" });
  });

  it("reports an unreachable API as status 0 with a sentence a person can act on", async () => {
    const fetcher = vi.fn<typeof fetch>(async () => {
      throw new TypeError("Failed to fetch");
    });
    const error = (await new ApiClient(fetcher).templates().catch((e: unknown) => e)) as ApiError;
    expect(error.isUnreachable).toBe(true);
    expect(error.message).toMatch(/cannot reach/);
  });

  it("explains a non-JSON server error", async () => {
    const fetcher = fakeFetch(new Response("<html>Bad Gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    const error = (await new ApiClient(fetcher).summary().catch((e: unknown) => e)) as ApiError;
    expect(error.status).toBe(502);
    expect(error.message).toMatch(/try again/);
  });

  it("answers null from me() when nobody is signed in, without the 401 hook", async () => {
    const client = new ApiClient(fakeFetch(problemResponse(401, "Unauthorized", "sign in")));
    client.onUnauthorized = vi.fn();
    expect(await client.me()).toBeNull();
    expect(client.onUnauthorized).not.toHaveBeenCalled();
  });

  it("calls the 401 hook when a signed-in request finds the session gone", async () => {
    const client = new ApiClient(fakeFetch(problemResponse(401, "Unauthorized", "sign in")));
    client.onUnauthorized = vi.fn();
    await expect(client.getJob("j")).rejects.toBeInstanceOf(ApiError);
    expect(client.onUnauthorized).toHaveBeenCalledOnce();
  });

  it("builds the job list query and sends the idempotency key on submit", async () => {
    const fetcher = fakeFetch(jsonResponse({ items: [], next_cursor: null }), jsonResponse({ id: "j" }, 202));
    const client = new ApiClient(fetcher);
    await client.listJobs({ state: ["running", "queued"], limit: 20, cursor: "abc" });
    await client.createJob({ template: "frame", upload_id: "u", crop: { x: 1, y: 2, width: 3, height: 4 } }, "key-1");
    expect(fetcher.mock.calls[0][0]).toBe("/api/v1/jobs?state=running&state=queued&limit=20&cursor=abc");
    expect(headersOf(fetcher, 1)["Idempotency-Key"]).toBe("key-1");
    expect(JSON.parse(fetcher.mock.calls[1][1]!.body as string)).toEqual({
      template: "frame",
      upload_id: "u",
      crop: { x: 1, y: 2, width: 3, height: 4 },
    });
  });

  it("reads events after a given id for the polling fallback", async () => {
    const fetcher = fakeFetch(jsonResponse({ items: [], is_terminal: false }));
    await new ApiClient(fetcher).jobEvents("j", 42);
    expect(fetcher.mock.calls[0][0]).toBe("/api/v1/jobs/j/events?after=42");
  });
});

class FakeXhr {
  static last: FakeXhr;
  upload: { onprogress: ((e: ProgressEvent) => void) | null } = { onprogress: null };
  headers: Record<string, string> = {};
  status = 0;
  statusText = "";
  responseText = "";
  sent: FormData | null = null;
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  method = "";
  url = "";
  constructor() {
    FakeXhr.last = this;
  }
  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }
  send(body: FormData) {
    this.sent = body;
  }
  abort() {
    this.onabort?.();
  }
  answer(status: number, body: unknown) {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload?.();
  }
}

describe("ApiClient.uploadPhoto", () => {
  const newXhr = () => new FakeXhr() as unknown as XMLHttpRequest;

  it("posts the file as multipart field 'file' and reports progress", async () => {
    const client = new ApiClient(fakeFetch(jsonResponse(session)), newXhr);
    await client.login({ email: "a@example.com", password: "12345678" });
    const progress: number[] = [];
    const done = client.uploadPhoto(new Blob(["x"]), "p.png", { onProgress: (f) => progress.push(f) });
    const xhr = FakeXhr.last;
    xhr.upload.onprogress?.({ lengthComputable: true, loaded: 50, total: 100 } as ProgressEvent);
    xhr.answer(201, { id: "up1", width: 10, height: 10 });
    expect((await done).id).toBe("up1");
    expect(progress).toEqual([0.5, 1]);
    expect(xhr.url).toBe("/api/v1/uploads");
    expect(xhr.headers[CSRF_HEADER]).toBe("tok");
    expect(xhr.sent?.get("file")).toBeInstanceOf(Blob);
  });

  it("rejects with the server's refusal", async () => {
    const client = new ApiClient(fakeFetch(), newXhr);
    const done = client.uploadPhoto(new Blob(["x"]), "p.txt");
    FakeXhr.last.answer(415, { title: "Unsupported image", status: 415, detail: "the file is not an image", field: "file" });
    await expect(done).rejects.toMatchObject({ status: 415, message: "the file is not an image" });
  });

  it("rejects as unreachable when the connection fails", async () => {
    const done = new ApiClient(fakeFetch(), newXhr).uploadPhoto(new Blob(["x"]), "p.png");
    FakeXhr.last.onerror?.();
    await expect(done).rejects.toMatchObject({ status: 0 });
  });
});

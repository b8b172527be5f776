import { describe, expect, it, vi } from "vitest";
import type { RouteLocationNormalized } from "vue-router";
import { guard, nextPath } from "./router";
import { loadSession } from "./session";

vi.mock("./session", () => ({ loadSession: vi.fn() }));

function to(meta: RouteLocationNormalized["meta"], fullPath = "/ops"): RouteLocationNormalized {
  return { meta, fullPath, name: "x", query: {} } as unknown as RouteLocationNormalized;
}

describe("guard", () => {
  it("sends a signed-out visitor to sign in, remembering where they were going", async () => {
    vi.mocked(loadSession).mockResolvedValue(null);
    expect(await guard(to({}, "/videos"))).toEqual({ name: "signin", query: { next: "/videos" } });
  });

  it("keeps plain users out of operator pages", async () => {
    vi.mocked(loadSession).mockResolvedValue({ id: "u", email: "a@b.c", role: "user", created_at: "" });
    expect(await guard(to({ isOperatorOnly: true }))).toEqual({ name: "forbidden" });
  });

  it("lets operators in", async () => {
    vi.mocked(loadSession).mockResolvedValue({ id: "u", email: "a@b.c", role: "operator", created_at: "" });
    expect(await guard(to({ isOperatorOnly: true }))).toBe(true);
  });

  it("shows the unavailable page when the API cannot be reached", async () => {
    vi.mocked(loadSession).mockRejectedValue(new Error("down"));
    expect(await guard(to({}, "/new"))).toEqual({ name: "unavailable", query: { next: "/new" } });
  });
});

describe("nextPath", () => {
  it("follows only paths inside the app", () => {
    const route = (next: string) => ({ query: { next } }) as never;
    expect(nextPath(route("/videos/1"), "/")).toBe("/videos/1");
    expect(nextPath(route("https://evil.example"), "/")).toBe("/");
    expect(nextPath(route("//evil.example"), "/")).toBe("/");
  });
});

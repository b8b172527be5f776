import type { Problem } from "./types";

/** An API call that did not succeed: an HTTP problem, or the API out of reach (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }

  /** Messages by field name, for forms that show errors next to each field. */
  get fieldErrors(): Record<string, string> {
    const found: Record<string, string> = {};
    for (const error of this.problem.errors ?? []) {
      if (!(error.field in found)) found[error.field] = error.message;
    }
    if (this.problem.field && !(this.problem.field in found)) {
      found[this.problem.field] = stripFieldPrefix(this.message, this.problem.field);
    }
    return found;
  }

  get isUnreachable(): boolean {
    return this.status === 0;
  }
}

function stripFieldPrefix(message: string, field: string): string {
  const prefix = `${field}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

/** Build an ApiError from a response body (problem+json, or whatever a proxy answered). */
export function problemFrom(status: number, statusText: string, body: string): ApiError {
  try {
    const parsed = JSON.parse(body) as Partial<Problem>;
    if (parsed && typeof parsed === "object" && typeof parsed.title === "string") {
      return new ApiError({ ...parsed, title: parsed.title, status });
    }
  } catch {
    // Not JSON: a proxy or the server's own error page.
  }
  const title = statusText || `HTTP ${status}`;
  const detail =
    status >= 500 ? "the server had a problem; try again in a moment" : `the server answered ${status}`;
  return new ApiError({ title, status, detail });
}

/** The error for a request that never got an answer. */
export function unreachable(): ApiError {
  return new ApiError({
    title: "API unreachable",
    status: 0,
    detail: "cannot reach the clipyard API; check your connection and try again",
  });
}

/** A short sentence for any thrown value, for error banners. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

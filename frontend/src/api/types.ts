// Bodies of the clipyard API, as backend/schemas.py defines them (see /api/openapi.json).
// Money arrives as decimal strings; times as ISO 8601 strings.

export type Role = "user" | "operator";

export interface User {
  id: string;
  email: string;
  role: Role;
  created_at: string;
}

export interface SessionOut {
  user: User;
  csrf_token: string;
}

export interface Credentials {
  email: string;
  password: string;
}

export interface Upload {
  id: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
  width: number;
  height: number;
  created_at: string;
}

export interface Template {
  name: string;
  title: string;
  duration_s: number;
  fps: number;
  width: number;
  height: number;
  placement_aspect: number;
  poster_url: string | null;
  // Not served by the API yet (no template video route): shown when present.
  preview_url?: string | null;
}

export const JOB_STATES = [
  "queued",
  "starting",
  "running",
  "retry_wait",
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TERMINAL_STATES: readonly JobState[] = ["succeeded", "failed", "cancelled", "timed_out"];
export const RETRYABLE_STATES: readonly JobState[] = ["failed", "cancelled", "timed_out"];

export interface Crop {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface JobCreate {
  template: string;
  upload_id: string;
  crop?: Crop | null;
}

export interface Job {
  id: string;
  state: JobState;
  template_id: string;
  upload_id: string;
  batch_id: string | null;
  row_id: string | null;
  crop: number[] | null;
  progress: number;
  attempt: number;
  max_attempts: number;
  cancel_requested: boolean;
  error_code: string | null;
  error_message: string | null;
  estimated_cost_usd: string | null;
  actual_cost_usd: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result_url: string | null;
  poster_url: string | null;
}

export interface JobPage {
  items: Job[];
  next_cursor: string | null;
}

export interface JobEvent {
  id: number;
  kind: string;
  from_state: string | null;
  to_state: string | null;
  data: Record<string, unknown>;
  created_at: string;
}

export interface EventList {
  items: JobEvent[];
  is_terminal: boolean;
}

export interface Batch {
  id: string;
  name: string;
  state: string;
  paused_reason: string | null;
  budget_usd: string;
  reserved_usd: string;
  spent_usd: string;
  max_concurrent: number;
  cpu: string;
  memory_gb: string;
  max_runtime_s: number;
  is_spot: boolean;
  created_at: string;
  jobs_by_state: Record<string, number>;
}

export interface BatchSpend {
  id: string;
  name: string;
  state: string;
  budget_usd: string;
  reserved_usd: string;
  spent_usd: string;
}

export interface Summary {
  queues: Record<string, Record<string, number>>;
  jobs_by_state: Record<string, number>;
  running_containers: number;
  running_cpu: string;
  spend_today_usd: string;
  spend_total_usd: string;
  container_seconds_total: number;
  batches: BatchSpend[];
  failures_by_kind_24h: Record<string, number>;
  supervision_lag_s: number;
  oldest_queued_s: number;
}

/** An RFC 9457 problem, as every API error is answered. */
export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  field?: string;
  errors?: { field: string; message: string }[];
  limit?: number;
}

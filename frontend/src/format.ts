// Small pure helpers for showing times, money and progress.
import type { Job, JobState } from "./api/types";
import { TERMINAL_STATES } from "./api/types";

export function isTerminal(state: JobState | string): boolean {
  return (TERMINAL_STATES as readonly string[]).includes(state);
}

/** "42 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** Seconds the job has taken so far (or took, once finished). */
export function elapsedSeconds(job: Pick<Job, "created_at" | "finished_at">, now: number): number {
  const start = Date.parse(job.created_at);
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - start) / 1000);
}

/**
 * Estimate the seconds left from the progress rate since the container started.
 *
 * Null until there is enough progress to extrapolate from (or once the job is over).
 */
export function etaSeconds(
  job: Pick<Job, "state" | "started_at" | "progress">,
  now: number,
): number | null {
  if (job.state !== "running" || !job.started_at) return null;
  const progress = job.progress;
  if (progress < 0.02 || progress >= 1) return null;
  const running = (now - Date.parse(job.started_at)) / 1000;
  if (running <= 0) return null;
  return (running * (1 - progress)) / progress;
}

export function formatPercent(fraction: number): string {
  return `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}

/** "$0.0123" for a decimal string of dollars (the API's money). */
export function formatUsd(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === "") return "—";
  const amount = Number(value);
  if (!Number.isFinite(amount)) return "—";
  // Cents for ordinary sums; four places for the fractions of a cent single jobs cost.
  const digits = Math.abs(amount) >= 0.1 || amount === 0 ? 2 : 4;
  return `$${amount.toFixed(digits)}`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function formatTime(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

const STATE_LABELS: Record<string, string> = {
  queued: "Queued",
  starting: "Starting",
  running: "Running",
  retry_wait: "Waiting to retry",
  succeeded: "Ready",
  failed: "Failed",
  cancelled: "Cancelled",
  timed_out: "Timed out",
};

export function stateLabel(state: string): string {
  return STATE_LABELS[state] ?? state;
}
